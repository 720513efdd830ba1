"""/account/activity/: the customer's own audit trail in plain words, from an allow-list."""

import datetime

import pytest
import time_machine

from billing.api.tokens import token_create
from billing.invoices import services as invoice_services
from billing.payments import services as payments
from billing.payments.models import PaymentKind
from contracts import services as contract_services
from core import l10n
from core.activity import customer_activity, describe
from core.audit import audit_record
from tests.billing.invoices.pages_support import fail
from tests.factories import MembershipFactory, PaymentMethodFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db

PAGE = "/account/activity/"


@pytest.fixture
def member(customer):
    return MembershipFactory(customer=customer, user__username="demo@example.com")


def _paid_by(user, invoice):
    """Pay online started by `user`, confirmed by the provider (a system actor)."""
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor=user
    )
    payments.payment_record_success(
        payment_id=payment.pk, actor="sandbox", brand="visa", last4="4242"
    )
    invoice.refresh_from_db()
    return invoice


def _texts(client) -> list[str]:
    return [item.text for item in client.get(PAGE).context["items"]]


def test_paid_with_which_card_by_whom(client, member, customer):
    invoice = _paid_by(member.user, make_invoice(customer=customer))
    client.force_login(member.user)
    texts = _texts(client)
    # Money and dates as English writes them (Babel, en_GB): "€119.00", "15 Jan 2026".
    total, due = l10n.money(invoice.total, "EUR", "en"), l10n.date(invoice.due_date, "en")
    assert (
        f"Invoice {invoice.number} paid with Visa •••• 4242 by demo@example.com: {total}" in texts
    )
    assert f"Invoice {invoice.number} issued for {total}, due {due}" in texts
    assert any(t.startswith("Contract C-") and "started for 10." in t for t in texts)


def test_the_sentences_are_written_in_the_page_language(client, member, customer):
    """The entry keeps values; the sentence is written when read, in the reader's language."""
    invoice = _paid_by(member.user, make_invoice(customer=customer))
    client.force_login(member.user)
    items = client.get(PAGE, headers={"accept-language": "de"}).context["items"]
    texts = [item.text for item in items]
    total, due = l10n.money(invoice.total, "EUR", "de"), l10n.date(invoice.due_date, "de")
    assert (
        f"Rechnung {invoice.number} bezahlt mit Visa •••• 4242 von demo@example.com: {total}"
        in texts
    )
    assert f"Rechnung {invoice.number} über {total} ausgestellt, fällig am {due}" in texts
    assert {item.kind_label for item in items} >= {"Rechnungen", "Verträge und Blöcke"}


def test_e_mails_sent_are_listed_with_their_subject(client, member, customer):
    invoice = make_invoice(customer=customer)
    audit_record(
        actor="notifications",
        action="notification.cancellation_warning_3d",
        target=invoice,
        customer=customer,
        after={
            "to": ["billing@example.com"],
            "subject": "Contract C-000001 will be cancelled on 01 July 2026",
        },
    )
    client.force_login(member.user)
    assert (
        "E-mail “Contract C-000001 will be cancelled on 01 July 2026” sent to billing@example.com"
        in _texts(client)
    )


def test_staff_notes_and_internal_steps_never_show(client, member, customer):
    invoice = make_invoice(customer=customer)
    invoice_services.invoice_void(
        invoice_id=invoice.pk, actor="staff", reason="STAFF-ONLY customer is difficult"
    )
    audit_record(
        actor="staff",
        action="invoice.note",
        target=invoice,
        customer=customer,
        note="INTERNAL NOTE",
    )
    payments.payment_create(
        invoice_id=make_invoice(customer=customer).pk,
        provider="sandbox",
        kind=PaymentKind.CHECKOUT,
        actor="t",
    )
    client.force_login(member.user)
    html = client.get(PAGE).content.decode()
    assert "STAFF-ONLY" not in html and "INTERNAL NOTE" not in html
    assert f"Invoice {invoice.number} voided: it is not to be paid" in html
    shown = {e.action for e in customer_activity(customer.pk)}
    assert "invoice.note" not in shown and "payment.created" not in shown
    assert "invoice.draft_created" not in shown and "ipblock.leased" not in shown
    # Every entry of the customer that is shown has a sentence; the rest are not read.
    assert len(describe(customer_activity(customer.pk))) == customer_activity(customer.pk).count()


def test_only_the_customers_own_activity(client, member, customer, other_customer):
    foreign = make_invoice(customer=other_customer)
    mine = make_invoice(customer=customer)
    client.force_login(member.user)
    html = client.get(PAGE).content.decode()
    assert mine.number in html and foreign.number not in html


def test_filter_by_kind_and_dates(client, member, customer):
    with time_machine.travel(datetime.datetime(2026, 3, 2, 9, tzinfo=datetime.UTC)):
        march = make_invoice(customer=customer)
    with time_machine.travel(datetime.datetime(2026, 5, 4, 9, tzinfo=datetime.UTC)):
        may = make_invoice(customer=customer)
        fail(may)
        PaymentMethodFactory(customer=customer)
        token_create(
            membership=member,
            name="ERP",
            scopes=["read:invoices"],
            expires_at=None,
            actor=member.user,
        )
    client.force_login(member.user)

    payments_only = client.get(PAGE, {"kind": "payments"}).context["items"]
    assert payments_only and {i.kind for i in payments_only} == {"payments"}
    assert any(f"for invoice {may.number} did not go through" in i.text for i in payments_only)

    account = [i.text for i in client.get(PAGE, {"kind": "account"}).context["items"]]
    assert "API token “ERP” created by demo@example.com (read:invoices)" in account

    spring = [
        i.text
        for i in client.get(PAGE, {"date_from": "2026-03-01", "date_to": "2026-03-31"}).context[
            "items"
        ]
    ]
    assert any(march.number in t for t in spring) and not any(may.number in t for t in spring)


def test_a_filter_that_does_not_parse_is_named_and_ignored(client, member, customer):
    make_invoice(customer=customer)
    client.force_login(member.user)
    response = client.get(PAGE, {"kind": "secrets", "date_from": "yesterday"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Show: Select a valid choice" in html and "From: Enter a valid date" in html
    assert response.context["items"], "everything is shown instead"
    swapped = client.get(PAGE, {"date_from": "2026-05-01", "date_to": "2026-04-01"})
    assert "swap the dates" in swapped.content.decode()


def test_pages_and_a_constant_number_of_queries(
    client, member, customer, django_assert_max_num_queries
):
    contract = make_contract(customer)
    for day in range(30):
        contract_services.contract_extend_grace(
            contract_id=contract.pk,
            until=datetime.date(2027, 7, 1) + datetime.timedelta(days=day),
            actor="staff",
        )
    _paid_by(member.user, make_invoice(customer=customer))
    client.force_login(member.user)
    first = client.get(PAGE)
    assert len(first.context["items"]) == 25
    assert first.context["page"].paginator.num_pages == 2
    second = client.get(PAGE, {"page": 2})
    assert len(second.context["items"]) == customer_activity(customer.pk).count() - 25
    with django_assert_max_num_queries(8):
        client.get(PAGE)
    with django_assert_max_num_queries(8):
        client.get(PAGE, {"page": 2})


def test_every_member_may_read_it(client, customer):
    from contracts.models import Role

    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    make_invoice(customer=customer)
    response = client.get(PAGE)
    assert response.status_code == 200 and response.context["items"]


def test_billing_details_changes_name_the_fields(client, member, customer):
    from contracts.services import customer_update

    customer_update(
        customer_id=customer.pk,
        changes={"city": "Hamburg", "postal_code": "20095"},
        actor=member.user,
    )
    client.force_login(member.user)
    texts = [i.text for i in client.get(PAGE, {"kind": "account"}).context["items"]]
    (line,) = [t for t in texts if t.startswith("Billing details changed")]
    assert line.startswith("Billing details changed by demo@example.com: ")
    assert "city" in line and "Hamburg" not in line
