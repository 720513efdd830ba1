"""Saved bank accounts (SEPA Direct Debit) with their mandate, and the payment method a
contract names: saved from the sandbox's setup page, shown on the payment methods and
contract pages, used by automatic charges (which then process for days), replaced when
removed."""

import re

import pytest

from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments import tasks
from billing.payments.models import (
    ContractPaymentMethod,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
)
from billing.payments.providers import sandbox
from contracts.models import Role
from core.models import AuditEntry
from tests.factories import (
    MembershipFactory,
    PaymentMethodFactory,
    make_contract,
    make_invoice,
)

pytestmark = pytest.mark.django_db

SUCCEEDS = "DE89370400440532013000"
FAILS = "DE62370400440532013001"
DISPUTED = "DE35370400440532013002"


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True
    settings.SANDBOX_DEBIT_DELAY_SECONDS = 45


@pytest.fixture
def queued(monkeypatch):
    """The bank's delayed answers, held back as the worker's countdown would."""
    calls = []
    monkeypatch.setattr(
        tasks.sandbox_settle_debit,
        "apply_async",
        lambda args, countdown=None: calls.append((tuple(args), countdown)),
    )
    return calls


def _settle(queued) -> None:
    """The worker, once SANDBOX_DEBIT_DELAY_SECONDS have passed (delivered twice)."""
    for args, _countdown in queued:
        tasks.sandbox_settle_debit(*args)
        tasks.sandbox_settle_debit(*args)
    queued.clear()


def _save_iban(client, iban: str, *, mandate: bool = True):
    """Payment methods → Add → the sandbox's setup page → a test IBAN with its mandate."""
    start = client.post("/payment-methods/", {"action": "add"})
    assert start.status_code == 303
    data = {"action": "iban", "iban": iban}
    if mandate:
        data["mandate"] = "1"
    return client.post(start["Location"], data)


def _iban_method(customer, iban: str, **kw) -> PaymentMethod:
    payments.provider_event_apply(
        sandbox.attach_iban_event(customer.pk, sandbox.iban_for(iban)), actor="test"
    )
    method = PaymentMethod.objects.filter(customer=customer, last4=iban[-4:]).latest("pk")
    for name, value in kw.items():
        setattr(method, name, value)
    method.save()
    return method


def test_a_test_iban_is_saved_with_its_mandate_and_shown(client, owner, customer):
    client.force_login(owner)
    refused = _save_iban(client, SUCCEEDS, mandate=False)
    assert refused.status_code == 400 and b"Accept the direct debit mandate" in refused.content
    assert not PaymentMethod.objects.exists()

    saved = _save_iban(client, "DE89 3704 0044 0532 0130 00")
    assert saved.status_code == 303
    method = PaymentMethod.objects.get()
    assert (method.type, method.last4, method.bank_name, method.is_default) == (
        "sepa_debit",
        "3000",
        "Commerzbank",
        True,
    )
    assert method.exp_month is None and method.mandate_reference.startswith("SANDBOX-")
    assert method.mandate_accepted_at is not None
    assert "to debit your account" in method.mandate_text
    assert AuditEntry.objects.filter(action="payment_method.added", object_id=str(method.pk))

    page = client.get("/payment-methods/").content.decode()
    assert "SEPA Direct Debit · Commerzbank" in page and "•••• 3000" in page
    assert f"mandate {method.mandate_reference}" in page
    accepted = method.mandate_accepted_at.strftime("%-d %b %Y")
    assert f"accepted {accepted}" in page
    assert "Mandate text you accepted" in page and "to debit your account" in page


def test_an_automatic_charge_to_a_saved_iban_processes_then_pays(customer, queued):
    invoice = make_invoice(customer=customer)  # no method yet: not charged at finalisation
    _iban_method(customer, SUCCEEDS)
    payment = payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="calendar")
    assert payment.status == PaymentStatus.PROCESSING
    assert (payment.method_brand, payment.method_last4) == ("SEPA Direct Debit", "3000")
    assert queued == [((payment.pk, SUCCEEDS), 45)]
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0
    # No second charge while it processes.
    assert payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="calendar") is None
    assert invoice.payments.count() == 1

    _settle(queued)
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total


def test_the_disputed_test_iban_is_returned_like_a_lost_dispute(customer, queued):
    invoice = make_invoice(customer=customer)
    _iban_method(customer, DISPUTED)
    payment = payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="calendar")
    assert payment.status == PaymentStatus.PROCESSING
    _settle(queued)  # succeeds, then the bank returns it (debit_not_authorized), twice
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.dispute_status == "lost"
    assert payment.amount_refunded == payment.amount
    assert payment.refunds.count() == 1
    assert invoice.status == InvoiceStatus.REFUND and invoice.amount_refunded == invoice.total


def test_the_contracts_own_method_is_the_one_charged(customer, owner, queued):
    card = PaymentMethodFactory(customer=customer, last4="4242", is_default=False)
    plain = make_contract(customer)
    named = make_contract(customer)
    plain_invoice = make_invoice(plain)
    named_invoice = make_invoice(named)
    iban = _iban_method(customer, SUCCEEDS, is_default=False)
    card.is_default = True
    card.save()
    payments.contract_payment_method_set(
        customer_id=customer.pk, contract_id=named.pk, method_id=iban.pk, actor=owner
    )

    by_card = payments.invoice_charge_automatically(invoice_id=plain_invoice.pk, actor="t")
    by_iban = payments.invoice_charge_automatically(invoice_id=named_invoice.pk, actor="t")
    assert (by_card.status, by_card.method_last4) == (PaymentStatus.SUCCEEDED, "4242")
    assert (by_iban.status, by_iban.method_last4) == (PaymentStatus.PROCESSING, "3000")
    assert by_iban.method_brand == "SEPA Direct Debit"

    entry = AuditEntry.objects.get(action="contract.payment_method")
    assert entry.after == {"method": iban.label} and entry.before == {"method": "default"}
    # Back to the default: the next charge of that contract is the card.
    payments.contract_payment_method_set(
        customer_id=customer.pk, contract_id=named.pk, method_id=None, actor=owner
    )
    assert not ContractPaymentMethod.objects.exists()


def test_the_contract_page_shows_and_changes_the_method(client, customer, owner):
    contract = make_contract(customer)
    card = PaymentMethodFactory(customer=customer, last4="4242")
    iban = _iban_method(customer, SUCCEEDS)
    client.force_login(owner)
    page = client.get(f"/contracts/{contract.pk}/").content.decode()
    assert "Charged to your default method, Visa •••• 4242." in page
    assert 'name="method"' in page

    url = f"/contracts/{contract.pk}/payment-method/"
    assert client.post(url, {"method": str(iban.pk)}).status_code == 302
    page = client.get(f"/contracts/{contract.pk}/").content.decode()
    assert "Charged to SEPA Direct Debit · Commerzbank •••• 3000." in page
    assert ContractPaymentMethod.objects.get(contract=contract).method == iban
    client.post(url, {"method": "default"})
    assert not ContractPaymentMethod.objects.filter(contract=contract).exists()
    assert card.pk  # the default stays what it was

    # Another customer's method or contract is 404, and changes nothing.
    stranger = PaymentMethodFactory(last4="4242", is_default=True)
    assert client.post(url, {"method": str(stranger.pk)}).status_code == 404
    other = make_contract()
    assert client.post(f"/contracts/{other.pk}/payment-method/", {"method": ""}).status_code == 404
    assert client.post(url, {"method": "x²"}).status_code == 404
    assert not ContractPaymentMethod.objects.exists()


def test_a_viewer_sees_the_method_but_cannot_change_it(client, customer):
    contract = make_contract(customer)
    iban = _iban_method(customer, SUCCEEDS)
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    page = client.get(f"/contracts/{contract.pk}/").content.decode()
    assert "Charged to your default method, SEPA Direct Debit · Commerzbank •••• 3000." in page
    assert 'name="method"' not in page
    url = f"/contracts/{contract.pk}/payment-method/"
    assert client.post(url, {"method": str(iban.pk)}).status_code == 403
    assert not ContractPaymentMethod.objects.exists()


def test_removing_a_method_a_contract_uses_asks_for_its_replacement(client, customer, owner):
    first = make_contract(customer)
    second = make_contract(customer)
    card = PaymentMethodFactory(customer=customer, last4="4242")
    iban = _iban_method(customer, SUCCEEDS)
    other_iban = _iban_method(customer, FAILS)
    for contract in (first, second):
        payments.contract_payment_method_set(
            customer_id=customer.pk, contract_id=contract.pk, method_id=iban.pk, actor=owner
        )
    client.force_login(owner)
    page = client.get(f"/payment-methods/{iban.pk}/remove/").content.decode()
    assert "2 contracts are charged to it. Which method charges them instead?" in page
    assert f"Contract {first.reference}" in page and f"Contract {second.reference}" in page
    assert re.search(rf'value="{other_iban.pk}"', page) and "Whatever my default" in page

    # Not the method itself, nor another customer's.
    stranger = PaymentMethodFactory(last4="4242", is_default=True)
    for bad in (iban.pk, stranger.pk):
        client.post(
            "/payment-methods/", {"action": "remove", "method": iban.pk, "replacement": bad}
        )
        assert PaymentMethod.objects.filter(pk=iban.pk).exists()

    response = client.post(
        "/payment-methods/",
        {"action": "remove", "method": iban.pk, "replacement": other_iban.pk},
    )
    assert response.status_code == 302
    assert not PaymentMethod.objects.filter(pk=iban.pk).exists()
    assert {link.method for link in ContractPaymentMethod.objects.all()} == {other_iban}
    assert ContractPaymentMethod.objects.count() == 2

    # The default as replacement: the contracts go back to the customer's default.
    client.post(
        "/payment-methods/", {"action": "remove", "method": other_iban.pk, "replacement": ""}
    )
    assert not ContractPaymentMethod.objects.exists()
    assert list(PaymentMethod.objects.filter(customer=customer)) == [card]


def test_the_methods_page_lists_contracts_in_flat_queries(
    client, customer, owner, django_assert_max_num_queries
):
    iban = _iban_method(customer, SUCCEEDS)
    for _ in range(3):
        contract = make_contract(customer)
        payments.contract_payment_method_set(
            customer_id=customer.pk, contract_id=contract.pk, method_id=iban.pk, actor=owner
        )
    client.force_login(owner)
    with django_assert_max_num_queries(12) as counted:
        page = client.get("/payment-methods/").content.decode()
    few = len(counted.captured_queries)
    assert page.count(">contract C-") == 3
    for _ in range(5):
        PaymentMethodFactory(customer=customer, last4="4242", is_default=False)
        contract = make_contract(customer)
        payments.contract_payment_method_set(
            customer_id=customer.pk, contract_id=contract.pk, method_id=iban.pk, actor=owner
        )
    with django_assert_max_num_queries(few):
        client.get("/payment-methods/")


def test_the_hosted_page_offers_the_saved_iban_for_euro_invoices_only(
    client, customer, owner, queued
):
    euros = make_invoice(customer=customer)
    dollars = make_invoice(customer=customer, currency="USD")
    iban = _iban_method(customer, SUCCEEDS)
    client.force_login(owner)
    page = client.get(f"/invoices/{euros.number}/pay/").content.decode()
    assert "SEPA Direct Debit · Commerzbank •••• 3000" in page
    assert f"mandate {iban.mandate_reference}" in page
    assert (
        "SEPA Direct Debit" not in client.get(f"/invoices/{dollars.number}/pay/").content.decode()
    )

    response = client.post(f"/invoices/{euros.number}/pay/", {"payment_method": iban.provider_id})
    assert response.status_code == 303
    detail = client.get(response["Location"]).content.decode()
    assert "Payment processing" in detail and "bank debit" in detail
    payment = Payment.objects.get(invoice=euros)
    assert (payment.kind, payment.status) == (PaymentKind.API, PaymentStatus.PROCESSING)
    _settle(queued)
    euros.refresh_from_db()
    assert euros.status == InvoiceStatus.PAID


@pytest.mark.parametrize("iban", [SUCCEEDS, FAILS, DISPUTED])
def test_a_bank_answering_at_once_still_follows_processing(customer, iban):
    """Tasks run eagerly here: the bank's answer arrives before the charge call returns.
    The outcome stands; "processing" never comes back after it."""
    invoice = make_invoice(customer=customer)
    _iban_method(customer, iban)
    payment = payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="calendar")
    payment.refresh_from_db()
    invoice.refresh_from_db()
    expected = {
        SUCCEEDS: (PaymentStatus.SUCCEEDED, InvoiceStatus.PAID),
        FAILS: (PaymentStatus.FAILED, InvoiceStatus.OPEN),
        DISPUTED: (PaymentStatus.REFUNDED, InvoiceStatus.REFUND),
    }[iban]
    assert (payment.status, invoice.status) == expected
    statuses = list(
        AuditEntry.objects.filter(object_id=str(payment.pk), action__startswith="payment.")
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert statuses.index("payment.processing") < len(statuses) - 1
    assert statuses.count("payment.processing") == 1
