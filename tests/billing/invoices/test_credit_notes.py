"""Credit notes: numbering, tax reversal, where the money goes, bad input, the balance."""

import datetime
from decimal import Decimal

import pytest
import time_machine

from billing.invoices import services
from billing.invoices.balance import customer_balance_adjust
from billing.invoices.credit_notes import CreditLine, credit_note_issue
from billing.invoices.models import (
    BalanceTransactionKind,
    CreditNote,
    CustomerBalance,
    CustomerBalanceTransaction,
    InvoiceNumberCounter,
    InvoiceStatus,
)
from billing.payments import services as payments
from billing.payments.models import PaymentKind, PaymentStatus, RefundStatus
from core.errors import DomainError
from tests.factories import CustomerFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


def pay(invoice, amount=None):
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    kwargs = {} if amount is None else {"amount_received": D(amount), "currency_received": "EUR"}
    payments.payment_record_success(
        payment_id=payment.pk, actor="t", provider_payment_id=f"pi_sandbox_{payment.pk}", **kwargs
    )
    invoice.refresh_from_db()
    return payment


@pytest.fixture
def issue(django_capture_on_commit_callbacks):
    """Issue a credit note and run what follows its commit (the refund), as in production."""

    def run(invoice, **kw):
        kw.setdefault("reason", "wrong amount")
        kw.setdefault("settle", "credit")
        with django_capture_on_commit_callbacks(execute=True):
            note = credit_note_issue(invoice_id=invoice.pk, actor="staff", **kw)
        invoice.refresh_from_db()
        return note

    return run


def test_whole_open_invoice_credited_before_payment_is_void_with_the_tax_reversed(issue, customer):
    invoice = make_invoice(customer=customer)  # 100.00 + 19 % VAT
    note = issue(invoice, lines=[CreditLine(line.pk) for line in invoice.lines.all()])
    year = invoice.issue_date.year
    assert note.number == f"CN-{year}-000001"
    assert (note.subtotal, note.tax, note.total) == (D("100.00"), D("19.00"), D("119.00"))
    assert note.pre_payment_amount == D("119.00") and note.kind == "pre_payment"
    original = [
        (t.name, t.rate, t.taxable_amount, t.amount, t.note) for t in invoice.tax_lines.all()
    ]
    credited = [(t.name, t.rate, t.taxable_amount, t.amount, t.note) for t in note.tax_lines.all()]
    assert credited == original
    assert invoice.status == InvoiceStatus.VOID
    assert invoice.pre_payment_credit_notes_amount == D("119.00")
    assert invoice.amount_remaining == 0
    # Invoices keep their own series: the next invoice is not pushed along by the credit note.
    assert InvoiceNumberCounter.objects.get(series="INV").last_number == 1


def test_part_of_a_line_leaves_the_rest_due_and_payment_settles_it(issue, customer):
    invoice = make_invoice(customer=customer)
    (line,) = invoice.lines.all()
    note = issue(invoice, lines=[CreditLine(line.pk, D("40.00"))])
    assert (note.subtotal, note.tax, note.total) == (D("40.00"), D("7.60"), D("47.60"))
    assert note.lines.get().description.startswith("Part of: ")
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.amount_remaining == D("71.40")
    payment = pay(invoice)
    assert payment.amount == D("71.40")
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == D("71.40")


def test_open_invoice_partly_paid_becomes_paid_by_credit_and_the_rest_is_refunded(issue, customer):
    invoice = make_invoice(customer=customer)
    payment = pay(invoice, "50.00")  # short: 69.00 still due
    assert invoice.status == InvoiceStatus.OPEN
    note = issue(invoice, amount=D("119.00"), settle="refund")
    assert note.pre_payment_amount == D("69.00")
    assert (note.refund_amount, note.credit_amount) == (D("50.00"), D("0.00"))
    assert note.kind == "mixed"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.post_payment_credit_notes_amount == D("50.00")
    # The refund went through the provider, belongs to the credit note and leaves the
    # invoice's own refund figures alone.
    refund = payment.refunds.get()
    assert refund.credit_note == note and refund.status == RefundStatus.SUCCEEDED
    assert refund.amount == D("50.00")
    assert invoice.amount_refunded == 0
    note.refresh_from_db()
    assert note.refund_handled_at is not None
    # Running the refund again sends nothing more.
    assert payments.credit_note_refund(credit_note_id=note.pk, actor="t") == []
    assert payment.refunds.count() == 1


def test_paid_invoice_credit_left_as_balance_pays_the_next_invoice(issue, customer):
    first = make_invoice(customer=customer)
    pay(first)
    note = issue(first, amount=D("59.50"), settle="credit")
    assert (note.subtotal, note.tax) == (D("50.00"), D("9.50"))
    assert note.credit_amount == D("59.50") and note.kind == "post_payment"
    assert first.status == InvoiceStatus.PAID
    balance = CustomerBalance.objects.get(customer=customer, currency="EUR")
    assert balance.amount == D("59.50")
    second = make_invoice(customer=customer, price="40.00", started_on=datetime.date(2026, 2, 1))
    assert second.applied_balance == D("47.60")  # the whole 40 + 19 %
    assert second.status == InvoiceStatus.PAID and second.amount_paid == 0
    third = make_invoice(customer=customer, started_on=datetime.date(2026, 3, 1))
    assert third.applied_balance == D("11.90")
    assert third.amount_remaining == D("107.10") and third.status == InvoiceStatus.OPEN
    balance.refresh_from_db()
    assert balance.amount == 0
    kinds = list(
        CustomerBalanceTransaction.objects.filter(balance=balance)
        .order_by("pk")
        .values_list("kind", "amount", "ending_balance")
    )
    assert kinds == [
        (BalanceTransactionKind.CREDIT_NOTE, D("59.50"), D("59.50")),
        (BalanceTransactionKind.APPLIED_TO_INVOICE, D("-47.60"), D("11.90")),
        (BalanceTransactionKind.APPLIED_TO_INVOICE, D("-11.90"), D("0.00")),
    ]


def test_balance_never_crosses_currencies(customer):
    customer_balance_adjust(
        customer_id=customer.pk, currency="USD", amount=D("30.00"), note="goodwill", actor="s"
    )
    eur = make_invoice(customer=customer)
    assert eur.applied_balance == 0 and eur.amount_remaining == D("119.00")
    usd = make_invoice(customer=customer, currency="USD", started_on=datetime.date(2026, 2, 1))
    assert usd.applied_balance == D("30.00") and usd.currency == "USD"
    assert CustomerBalance.objects.get(customer=customer, currency="USD").amount == 0
    assert not CustomerBalance.objects.filter(customer=customer, currency="EUR", amount__gt=0)
    # Another customer's credit is theirs alone.
    other = CustomerFactory()
    assert make_invoice(customer=other).applied_balance == 0


def test_voiding_an_invoice_gives_its_applied_credit_back(customer):
    customer_balance_adjust(
        customer_id=customer.pk, currency="EUR", amount=D("20.00"), note="goodwill", actor="s"
    )
    invoice = make_invoice(customer=customer)
    assert invoice.applied_balance == D("20.00")
    services.invoice_void(invoice_id=invoice.pk, actor="s")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID and invoice.applied_balance == 0
    assert CustomerBalance.objects.get(customer=customer, currency="EUR").amount == D("20.00")


def test_credit_on_an_invoice_paid_from_the_balance_goes_back_to_the_balance(issue, customer):
    customer_balance_adjust(
        customer_id=customer.pk, currency="EUR", amount=D("200.00"), note="prepaid", actor="s"
    )
    invoice = make_invoice(customer=customer)
    assert invoice.status == InvoiceStatus.PAID and invoice.applied_balance == D("119.00")
    note = issue(invoice, amount=D("119.00"), settle="refund")
    # Nothing came from a card: it all returns to the balance, not to a payment method.
    assert (note.refund_amount, note.credit_amount) == (D("0.00"), D("119.00"))
    assert CustomerBalance.objects.get(customer=customer, currency="EUR").amount == D("200.00")


@pytest.mark.parametrize(
    ("country", "tax_id", "name", "rate", "note_part"),
    [
        ("FR", "FR40303265045", "VAT", "0.00", "Reverse charge"),
        ("FR", "", "VAT", "20.00", ""),  # OSS: the customer's country's VAT
        ("IN", "", "IGST", "18.00", ""),
        ("US", "", "VAT", "0.00", "outside the EU"),
    ],
)
def test_tax_notes_and_names_are_kept(issue, country, tax_id, name, rate, note_part):
    customer = CustomerFactory(country=country, tax_id=tax_id)
    invoice = make_invoice(customer=customer, price="33.33", blocks=3)
    original = list(invoice.tax_lines.values_list("name", "rate", "amount", "note"))
    note = issue(invoice, lines=[CreditLine(line.pk) for line in invoice.lines.all()])
    assert list(note.tax_lines.values_list("name", "rate", "amount", "note")) == original
    assert note.tax_note == invoice.tax_note
    assert original[0][:2] == (name, D(rate))
    assert note_part in (original[0][3] + invoice.tax_note)
    assert note.total == invoice.total


def test_tax_of_partial_credits_adds_up_to_the_original_to_the_cent(issue, customer):
    invoice = make_invoice(customer=customer, price="33.33", blocks=3)  # 99.99 net
    (tax_line,) = invoice.tax_lines.all()
    assert tax_line.amount == D("19.00")  # 18.9981 rounded once per rate
    lines = list(invoice.lines.all())
    notes = [
        issue(invoice, lines=[CreditLine(lines[0].pk, D("0.03"))]),
        issue(invoice, lines=[CreditLine(lines[0].pk, D("0.03"))]),
        issue(invoice, amount=D("10.01")),
        issue(invoice, lines=[CreditLine(lines[1].pk)]),
        issue(invoice, lines=[CreditLine(lines[0].pk), CreditLine(lines[2].pk, D("1.00"))]),
    ]
    last = issue(invoice, amount=invoice.amount_creditable)
    notes.append(last)
    assert sum(n.tax for n in notes) == D("19.00")
    assert sum(n.subtotal for n in notes) == D("99.99")
    assert sum(n.total for n in notes) == invoice.total
    assert notes[2].total == D("10.01")  # a free amount is what was asked, tax included
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID and invoice.amount_creditable == 0


def _unchanged(invoice):
    return (
        CreditNote.objects.count(),
        InvoiceNumberCounter.objects.filter(series="CN")
        .values_list("last_number", flat=True)
        .first(),
        type(invoice)
        .objects.filter(pk=invoice.pk)
        .values_list("status", "pre_payment_credit_notes_amount", "state_version")
        .get(),
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": D("119.01")}, "Only 119.00 EUR of invoice"),
        ({"amount": D("10.001")}, "at most two decimals"),
        ({"amount": D("-5")}, "more than zero"),
        ({"amount": D("5"), "reason": " "}, "Give the reason"),
        ({"amount": D("5"), "settle": "cash"}, "refund or credit"),
        ({}, "either invoice lines or a free amount"),
        ({"lines": [CreditLine(999999)]}, "is not a line of invoice"),
        ({"line_amount": D("100.01")}, "Only 100.00 EUR of line"),
        ({"line_twice": True}, "named twice"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(issue, customer, kwargs, message):
    invoice = make_invoice(customer=customer)
    (line,) = invoice.lines.all()
    if kwargs.pop("line_amount", None):
        kwargs["lines"] = [CreditLine(line.pk, D("100.01"))]
    if kwargs.pop("line_twice", None):
        kwargs["lines"] = [CreditLine(line.pk, D("1")), CreditLine(line.pk, D("1"))]
    before = _unchanged(invoice)
    with pytest.raises(DomainError, match=message):
        issue(invoice, **kwargs)
    assert _unchanged(invoice) == before


def test_after_earlier_credit_notes_only_the_rest_can_be_credited(issue, customer):
    invoice = make_invoice(customer=customer)
    (line,) = invoice.lines.all()
    issue(invoice, lines=[CreditLine(line.pk, D("60.00"))])
    before = _unchanged(invoice)
    with pytest.raises(DomainError, match=r"Only 40.00 EUR of line"):
        issue(invoice, lines=[CreditLine(line.pk, D("60.00"))])
    with pytest.raises(DomainError, match=r"Only 47.60 EUR of invoice"):
        issue(invoice, amount=D("50.00"))
    assert _unchanged(invoice) == before


def test_draft_and_void_invoices_cannot_be_credited(issue, customer):
    draft = make_invoice(customer=customer, finalize=False)
    with pytest.raises(DomainError, match="is draft; only an issued invoice"):
        issue(draft, amount=D("1.00"))
    void = make_invoice(customer=customer, started_on=datetime.date(2026, 2, 1))
    services.invoice_void(invoice_id=void.pk, actor="s")
    with pytest.raises(DomainError, match="is void"):
        issue(void, amount=D("1.00"))
    assert CreditNote.objects.count() == 0


def test_money_refunded_outside_a_credit_note_cannot_be_credited_again(issue, customer):
    invoice = make_invoice(customer=customer)
    payment = pay(invoice)
    payments.payment_refund(payment_id=payment.pk, amount=None, actor="s", reason="goodwill")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.REFUND
    with pytest.raises(DomainError, match=r"Only 0.00 EUR of what was paid"):
        issue(invoice, amount=D("10.00"), settle="credit")


def test_issuing_twice_with_one_key_issues_once(issue, customer):
    invoice = make_invoice(customer=customer)
    first = issue(invoice, amount=D("10.00"), idempotency_key="report-7")
    again = issue(invoice, amount=D("10.00"), idempotency_key="report-7")
    assert again.pk == first.pk and CreditNote.objects.count() == 1
    assert invoice.pre_payment_credit_notes_amount == D("10.00")


def test_refund_of_a_bank_transfer_is_handed_to_staff(issue, customer, caplog, mailoutbox):
    invoice = make_invoice(customer=customer)
    payments.invoice_record_out_of_band_payment(invoice_id=invoice.pk, actor="s")
    note = issue(invoice, amount=D("20.00"), settle="refund")
    assert note.refund_amount == D("20.00")
    note.refresh_from_db()
    assert note.refund_handled_at is not None
    assert "to return by hand" in caplog.text
    assert any("CN-" in m.subject for m in mailoutbox)


def test_paid_invoice_refunded_through_the_credit_note(issue, customer):
    invoice = make_invoice(customer=customer)
    payment = pay(invoice)
    with time_machine.travel(datetime.datetime(2026, 1, 20, 12, tzinfo=datetime.UTC)):
        note = issue(invoice, amount=D("119.00"), settle="refund")
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert note.refund_amount == D("119.00")
    assert payment.status == PaymentStatus.REFUNDED
    assert payment.refunds.get().credit_note_id == note.pk
    # Stripe keeps such an invoice paid; the credit note tells the story.
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.post_payment_credit_notes_amount == D("119.00")
    assert invoice.amount_creditable == 0


def test_finalising_with_no_credit_touches_no_balance_row(customer):
    make_contract(customer=customer)
    invoice = make_invoice(customer=customer)
    assert invoice.applied_balance == 0
    assert not CustomerBalance.objects.exists()
