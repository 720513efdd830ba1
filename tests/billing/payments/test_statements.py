"""Statements of account: the arithmetic on random histories, the page, PDF, CSV and API."""

import contextlib
import csv
import datetime
import io
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import translation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.invoices import services as invoices
from billing.invoices.balance import customer_balance_adjust
from billing.invoices.credit_notes import credit_note_issue
from billing.invoices.models import PAYABLE_STATUSES, CustomerBalance, Invoice, InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import PaymentKind, PaymentStatus
from billing.payments.statements import (
    ADJUSTMENT,
    CREDIT_NOTE,
    INVOICE,
    PAYMENT,
    REFUND,
    statement_build,
)
from core.errors import DomainError
from tests.billing.invoices.pdf_helpers import pdf_text
from tests.factories import CustomerFactory, MembershipFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db
D = Decimal
DAY0 = datetime.date(2026, 1, 5)


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


def _at(day: datetime.date):
    return time_machine.travel(
        datetime.datetime.combine(day, datetime.time(12), tzinfo=datetime.UTC), tick=False
    )


def _pay(invoice: Invoice, amount: Decimal | None = None) -> None:
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    extra = {} if amount is None else {"amount_received": amount, "currency_received": "EUR"}
    payments.payment_record_success(
        payment_id=payment.pk, actor="t", provider_payment_id=f"pi_sb_{payment.pk}", **extra
    )


def _apply(customer, op, day, issued: list[Invoice]) -> None:
    """One step of a history; a step that does not fit the state (e.g. paying a paid
    invoice) is skipped, as a person would not do it."""
    kind, pick, share, flag = op
    if kind == "invoice" or not issued:
        contract = make_contract(customer, price=f"{40 + pick * 7}.{share:02d}", started_on=day)
        issued.append(make_invoice(contract))
        return
    invoice = Invoice.objects.get(pk=issued[pick % len(issued)].pk)
    if kind == "pay" and invoice.status in PAYABLE_STATUSES:
        due = invoice.amount_remaining
        amount = {0: None, 1: (due * share / 100).quantize(D("0.01")), 2: due + D("5.00")}[flag % 3]
        if amount is None or amount > 0:
            _pay(invoice, amount)
    elif kind == "credit" and invoice.amount_creditable > 0:
        amount = max(D("0.01"), (invoice.amount_creditable * share / 100).quantize(D("0.01")))
        # A void invoice is refused (and changes nothing): histories may try it.
        with contextlib.suppress(DomainError):
            credit_note_issue(
                invoice_id=invoice.pk,
                amount=amount,
                reason="random correction",
                settle="refund" if flag % 2 else "credit",
                actor="t",
            )
    elif kind == "void" and invoice.status in PAYABLE_STATUSES and invoice.amount_paid == 0:
        invoices.invoice_void(invoice_id=invoice.pk, actor="t")
    elif kind == "refund" and invoice.status == InvoiceStatus.PAID:
        # Staff refund part of a payment without a credit note (goodwill, a lost dispute).
        payment = invoice.payments.filter(status=PaymentStatus.SUCCEEDED).first()
        left = payment.amount_collected - payment.amount_refunded if payment else 0
        if left > 0:
            payments.payment_refund(
                payment_id=payment.pk,
                amount=max(D("0.01"), (left * share / 100).quantize(D("0.01"))),
                actor="t",
                reason="goodwill",
            )
    elif kind == "adjust":
        customer_balance_adjust(
            customer_id=customer.pk, currency="EUR", amount=D(share + 1), note="x", actor="t"
        )


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["invoice", "invoice", "pay", "pay", "credit", "credit", "void", "refund", "adjust"]
        ),
        st.integers(0, 20),
        st.integers(1, 100),
        st.integers(0, 5),
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=OPS, gaps=st.lists(st.integers(0, 40), min_size=10, max_size=10), cut=st.integers(0, 400)
)
def test_closing_balance_adds_up_for_random_histories(
    ops, gaps, cut, django_capture_on_commit_callbacks
):
    customer = CustomerFactory()
    issued: list[Invoice] = []
    day = DAY0
    for op, gap in zip(ops, gaps, strict=False):
        day += datetime.timedelta(days=gap)
        with _at(day), django_capture_on_commit_callbacks(execute=True):
            _apply(customer, op, day, issued)
    today = day + datetime.timedelta(days=1)
    whole = statement_build(
        customer=customer,
        currency="EUR",
        start=datetime.date(2025, 1, 1),
        end=today,
        today=today,
    )
    # The formula, line by line.
    by_kind = {
        kind: sum((abs(ln.amount) for ln in whole.lines if ln.kind == kind), D("0"))
        for kind in (INVOICE, CREDIT_NOTE, PAYMENT, REFUND, ADJUSTMENT)
    }
    assert whole.opening == 0
    assert whole.closing == (
        whole.opening
        + by_kind[INVOICE]
        - by_kind[CREDIT_NOTE]
        - by_kind[PAYMENT]
        + by_kind[REFUND]
        - by_kind[ADJUSTMENT]  # credit given by staff (0 in histories without it)
    )
    running = whole.opening
    for line in whole.lines:
        running += line.amount
        assert line.balance == running
    # Independently of the statement: what the customer owes is what their invoices still
    # ask for, less the credit we hold for them.
    owed = sum(
        (i.amount_remaining for i in Invoice.objects.filter(customer=customer, currency="EUR")),
        D("0"),
    )
    credit = CustomerBalance.objects.filter(customer=customer, currency="EUR").first()
    assert whole.closing == owed - (credit.amount if credit else 0)
    assert whole.aging_total == owed
    # Two statements that meet carry the balance across.
    middle = DAY0 + datetime.timedelta(days=cut % max((today - DAY0).days, 1))
    first = statement_build(customer=customer, currency="EUR", start=DAY0, end=middle, today=today)
    second = statement_build(
        customer=customer,
        currency="EUR",
        start=middle + datetime.timedelta(days=1),
        end=today,
        today=today,
    )
    assert first.closing == second.opening
    assert second.closing == whole.closing
    assert len(first.lines) + len(second.lines) == len(whole.lines)


def _history(customer, callbacks):
    """An invoice paid then partly credited and refunded, one overdue, one recent. Each step
    runs what follows its commit (the refund) on its own day."""

    def on(day: datetime.date):
        stack = contextlib.ExitStack()
        stack.enter_context(_at(day))
        stack.enter_context(callbacks(execute=True))
        return stack

    with on(datetime.date(2026, 1, 1)):
        paid = make_invoice(make_contract(customer, started_on=datetime.date(2026, 1, 1)))
    with on(datetime.date(2026, 1, 3)):
        _pay(paid)
    with on(datetime.date(2026, 1, 10)):
        refunded = credit_note_issue(
            invoice_id=paid.pk, amount=D("19.00"), reason="wrong amount", settle="refund", actor="s"
        )
    with on(datetime.date(2026, 2, 1)):
        late = make_invoice(make_contract(customer, started_on=datetime.date(2026, 2, 1)))
    with on(datetime.date(2026, 3, 1)):
        recent = make_invoice(
            make_contract(customer, price="50.00", started_on=datetime.date(2026, 3, 1))
        )
    return paid, refunded, late, recent


def test_statement_lines_balances_and_aging(customer, django_capture_on_commit_callbacks):
    paid, refunded, late, recent = _history(customer, django_capture_on_commit_callbacks)
    statement = statement_build(
        customer=customer,
        currency="EUR",
        start=datetime.date(2026, 1, 2),
        end=datetime.date(2026, 3, 31),
        today=datetime.date(2026, 4, 20),
    )
    assert statement.opening == D("119.00")  # the first invoice, issued the day before
    kinds = [(ln.kind, ln.reference, ln.amount, ln.balance) for ln in statement.lines]
    assert kinds == [
        (PAYMENT, paid.number, D("-119.00"), D("0.00")),
        (CREDIT_NOTE, refunded.number, D("-19.00"), D("-19.00")),
        (REFUND, paid.number, D("19.00"), D("0.00")),
        (INVOICE, late.number, D("119.00"), D("119.00")),
        (INVOICE, recent.number, D("59.50"), D("178.50")),
    ]
    assert statement.closing == D("178.50")
    # On 31 March: the February invoice (due 15 Feb) is 44 days late, March's 17.
    assert dict((k, a) for k, _label, a in statement.aging) == {
        "current": D("0"),
        "1_30": D("59.50"),
        "31_60": D("119.00"),
        "61_90": D("0"),
        "over_90": D("0"),
    }


def test_a_period_that_ends_before_it_starts_is_refused(customer):
    with pytest.raises(DomainError, match=r"ends .* before it starts"):
        statement_build(
            customer=customer,
            currency="EUR",
            start=datetime.date(2026, 3, 1),
            end=datetime.date(2026, 2, 1),
        )


@pytest.fixture
def member_client(client, customer):
    client.force_login(MembershipFactory(customer=customer, role="viewer").user)
    return client


def test_statement_page_pdf_and_csv(
    member_client, customer, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    paid, refunded, late, recent = _history(customer, django_capture_on_commit_callbacks)
    query = "?currency=EUR&start=2026-01-01&end=2026-03-31"
    with django_assert_max_num_queries(20):
        page = member_client.get(reverse("payments:statement") + query)
    html = page.content.decode()
    assert page.status_code == 200
    for ref in (paid.number, refunded.number, late.number, recent.number):
        assert ref in html
    assert 'id="closing-balance">178.50 EUR' in html
    pdf = member_client.get(reverse("payments:statement-pdf") + query)
    assert pdf["Content-Type"] == "application/pdf"
    text = pdf_text(pdf.content)
    assert "Statement of account" in text and refunded.number in text
    assert "Closing balance EUR 178.50" in text
    assert "31-60 days €119.00" in text
    response = member_client.get(reverse("payments:statement-csv") + query)
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["date", "type", "reference", "description", "amount", "balance", "currency"]
    assert rows[1][:2] == ["2026-01-01", "opening_balance"] and rows[1][5] == "0.00"
    assert [r[1] for r in rows[2:-1]] == [INVOICE, PAYMENT, CREDIT_NOTE, REFUND, INVOICE, INVOICE]
    assert rows[-1][1:] == ["closing_balance", "", "", "", "178.50", "EUR"]
    # More history, same number of queries for the page.
    with django_capture_on_commit_callbacks(execute=True), _at(datetime.date(2026, 3, 5)):
        for _ in range(3):
            _pay(make_invoice(make_contract(customer, started_on=datetime.date(2026, 3, 5))))
    with django_assert_max_num_queries(20):
        member_client.get(reverse("payments:statement") + query)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?currency=EUR&start=2026-03-01&end=2026-02-01", "before it starts"),
        ("?currency=EUR&start=yesterday", "must look like 2026-01-31"),
        ("?currency=XYZ", "You have no invoices in"),
    ],
)
def test_bad_statement_queries_say_why(member_client, customer, query, message):
    make_invoice(customer=customer)
    page = member_client.get(reverse("payments:statement") + query)
    assert page.status_code == 400 and message in page.content.decode()
    for name in ("payments:statement-pdf", "payments:statement-csv"):
        response = member_client.get(reverse(name) + query)
        assert response.status_code == 400 and message in response.content.decode()


def test_statement_through_the_api(
    client, customer, make_token, django_capture_on_commit_callbacks
):
    from jsonschema_rs import Draft202012Validator

    from billing.api.views import openapi_document

    _history(customer, django_capture_on_commit_callbacks)
    membership = MembershipFactory(customer=customer)
    headers = {"Authorization": f"Bearer {make_token(membership)[1]}"}
    body = client.get(
        "/api/statement?currency=eur&start=2026-01-02&end=2026-03-31", headers=headers
    ).json()
    doc = openapi_document()
    Draft202012Validator(
        {**doc["components"]["schemas"]["Statement"], "components": doc["components"]}
    ).validate(body)
    assert (body["opening_balance"], body["closing_balance"]) == (11900, 17850)
    assert [ln["type"] for ln in body["lines"]] == [
        PAYMENT,
        CREDIT_NOTE,
        REFUND,
        INVOICE,
        INVOICE,
    ]
    assert body["aging"]["31_60"] == 11900
    bad = client.get("/api/statement?currency=eur&start=2026-03-01&end=2026-01-01", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "end"
    assert client.get("/api/statement", headers=headers).status_code == 400


def test_statement_never_mixes_currencies_or_customers(customer, other_customer):
    make_invoice(customer=customer, currency="USD")
    make_invoice(customer=other_customer)
    eur = statement_build(
        customer=customer, currency="EUR", start=datetime.date(2026, 1, 1), end=DAY0
    )
    assert eur.lines == [] and eur.closing == 0
    usd = statement_build(
        customer=customer, currency="USD", start=datetime.date(2026, 1, 1), end=DAY0
    )
    assert [ln.amount for ln in usd.lines] == [D("119.00")]


def test_staff_email_the_statement_from_admin(client, staff, customer, mailoutbox):
    make_invoice(customer=customer)
    client.force_login(staff)
    url = reverse("admin:contracts_customer_changelist")
    form = client.post(url, {"action": "email_statement", "_selected_action": [customer.pk]})
    assert b"E-mail a statement of account" in form.content
    refused = client.post(
        url,
        {
            "action": "email_statement",
            "_selected_action": [customer.pk],
            "apply": "1",
            "currency": "EUR",
            "start": "2026-03-01",
            "end": "2026-01-01",
        },
        follow=True,
    )
    assert "before it starts" in refused.content.decode() and mailoutbox == []
    client.post(
        url,
        {
            "action": "email_statement",
            "_selected_action": [customer.pk],
            "apply": "1",
            "currency": "EUR",
            "start": "2026-01-01",
            "end": "2026-01-31",
        },
    )
    (mail,) = mailoutbox
    assert customer.email in mail.to
    names = sorted(name for name, _content, _type in mail.attachments)
    assert names == [
        "statement-EUR-2026-01-01-2026-01-31.csv",
        "statement-EUR-2026-01-01-2026-01-31.pdf",
    ]
    # Amounts as in every other e-mail (core.l10n.money), in the customer's language.
    assert "Closing balance: €119.00" in mail.body


STATEMENT_MAILS = {
    "de": (
        "Kontoauszug EUR, 01.01.2026 bis 31.01.2026",
        ["Guten Tag {name},",
         "anbei erhalten Sie Ihren Kontoauszug in EUR vom 1. Januar 2026 bis 31. Januar 2026",
         "Anfangssaldo: 0,00\xa0€", "Endsaldo: 119,00\xa0€",
         "Offen und überfällig: 1\u201330 Tage 119,00\xa0€; insgesamt offen 119,00\xa0€.",
         "Sie können ihn jederzeit erneut herunterladen: http://testserver/statements/"],
        "Kontoauszug",
    ),
    "en": (
        "Statement of account EUR, 1 Jan 2026 to 31 Jan 2026",
        ["Hello {name},",
         "attached is your statement of account in EUR for 1 January 2026 to 31 January 2026",
         "Opening balance: €0.00", "Closing balance: €119.00",
         "Open and past due: 1-30 days €119.00; total open €119.00.",
         "You can download it again at any time: http://testserver/statements/"],
        "Statement of account",
    ),
}  # fmt: skip


@pytest.mark.parametrize("language", ["de", "en"])
def test_the_statement_e_mail_is_in_the_customers_document_language(customer, mailoutbox, language):
    from billing.payments.statements import statement_email

    customer.document_language = language
    customer.save()
    make_invoice(customer=customer)  # 119.00 EUR due 15 Jan: 16 days past due on the 31st
    # Sent by staff whose own admin language is the other one: the customer's language wins.
    other = {"de": "en", "en": "de"}[language]
    with translation.override(other), _at(datetime.date(2026, 1, 31)):
        statement_email(
            customer_id=customer.pk,
            currency="EUR",
            start=datetime.date(2026, 1, 1),
            end=datetime.date(2026, 1, 31),
            actor="staff",
        )
    (mail,) = mailoutbox
    subject, sentences, title = STATEMENT_MAILS[language]
    assert mail.subject == subject
    for sentence in sentences:
        assert sentence.format(name=customer.name) in mail.body, mail.body
    pdf = next(content for name, content, _type in mail.attachments if name.endswith(".pdf"))
    assert title in pdf_text(pdf)
