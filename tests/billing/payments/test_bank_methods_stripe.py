"""Saved bank accounts through Stripe at the HTTP boundary: a SEPA Direct Debit method and
its mandate saved from setup_intent.succeeded, Checkout in setup mode offering SEPA, and an
off-session charge of the saved IBAN (payment_method_types sepa_debit, under its mandate)
that processes until payment_intent.succeeded."""

import datetime
from urllib.parse import parse_qs, urlparse

import pytest
import responses

from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import PaymentMethod, PaymentStatus
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import (
    deliver_twice_shuffled,
    event,
    load,
    use_stripe,
)

pytestmark = pytest.mark.django_db

API = "https://api.stripe.com"


@pytest.fixture(autouse=True)
def _stripe(settings):
    use_stripe(settings, api_base=API)


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def known(customer):
    customer.stripe_customer_id = "cus_QXg1o8vcGmoR32"
    customer.save()
    return customer


def _sepa_pm(pm_id="pm_sepa_1", customer="cus_QXg1o8vcGmoR32") -> dict:
    pm = load("payment_method", id=pm_id, customer=customer, type="sepa_debit")
    pm.pop("card")
    pm["sepa_debit"] = {
        "bank_code": "37040044",
        "branch_code": "",
        "country": "DE",
        "fingerprint": "FxkPbhUWr1f0Dyl5",
        "generated_from": {"charge": None, "setup_attempt": None},
        "last4": "3000",
    }
    return pm


def _form(call) -> dict:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def test_setup_intent_succeeded_saves_the_iban_with_its_mandate(client, known, http):
    mandate = load("mandate", id="mandate_sepa_1", payment_method="pm_sepa_1")
    intent = load(
        "setup_intent",
        id="seti_sepa_1",
        customer="cus_QXg1o8vcGmoR32",
        status="succeeded",
        payment_method=_sepa_pm(),
        mandate=mandate,
    )
    http.get(f"{API}/v1/setup_intents/seti_sepa_1", json=intent)
    webhook = load(
        "setup_intent",
        id="seti_sepa_1",
        customer="cus_QXg1o8vcGmoR32",
        status="succeeded",
        payment_method="pm_sepa_1",
        mandate="mandate_sepa_1",
    )
    for response in deliver_twice_shuffled(client, [event("setup_intent.succeeded", webhook)]):
        assert response.status_code == 200
    query = parse_qs(urlparse(http.calls[0].request.url).query)
    expanded = {v for key, values in query.items() if key.startswith("expand") for v in values}
    assert expanded == {"payment_method", "mandate"}
    method = PaymentMethod.objects.get()
    assert (method.customer, method.type, method.last4, method.bank_name) == (
        known,
        "sepa_debit",
        "3000",
        "37040044",
    )
    assert method.exp_month is None and method.is_default
    assert (method.mandate_id, method.mandate_reference) == ("mandate_sepa_1", "123456789")
    assert method.mandate_accepted_at == datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    assert "to debit your account" in method.mandate_text


def test_a_later_attached_event_keeps_the_mandate(client, known, http):
    mandate = load("mandate", id="mandate_sepa_1", payment_method="pm_sepa_1")
    http.get(
        f"{API}/v1/setup_intents/seti_sepa_2",
        json=load("setup_intent", id="seti_sepa_2", payment_method=_sepa_pm(), mandate=mandate),
    )
    deliver_twice_shuffled(
        client,
        [
            event("payment_method.attached", _sepa_pm()),
            event(
                "setup_intent.succeeded",
                load(
                    "setup_intent",
                    id="seti_sepa_2",
                    customer="cus_QXg1o8vcGmoR32",
                    payment_method="pm_sepa_1",
                ),
            ),
        ],
        seed=3,
    )
    method = PaymentMethod.objects.get()
    assert method.type == "sepa_debit" and method.mandate_reference == "123456789"


def test_adding_a_method_offers_sepa_in_checkout_setup_mode(client, owner, known, http):
    http.post(
        f"{API}/v1/checkout/sessions",
        json=load(
            "checkout_session",
            id="cs_setup_1",
            mode="setup",
            url="https://checkout.stripe.com/c/setup",
        ),
    )
    client.force_login(owner)
    response = client.post("/payment-methods/", {"action": "add"})
    assert response.status_code == 303
    sent = _form(http.calls[0])
    assert sent["mode"] == "setup" and sent["currency"] == "eur"
    assert [sent["payment_method_types[0]"], sent["payment_method_types[1]"]] == [
        "card",
        "sepa_debit",
    ]


def test_a_saved_iban_is_debited_off_session_and_processes(known, http):
    invoice = make_invoice(customer=known)
    PaymentMethod.objects.create(
        customer=known,
        provider="stripe",
        provider_id="pm_sepa_1",
        type="sepa_debit",
        last4="3000",
        mandate_id="mandate_sepa_1",
        mandate_reference="123456789",
        is_default=True,
    )
    total = to_minor_units(invoice.total)
    processing = load(
        "payment_intent",
        id="pi_sepa_1",
        status="processing",
        amount=total,
        amount_received=0,
        currency="eur",
        customer="cus_QXg1o8vcGmoR32",
        latest_charge=None,
        last_payment_error=None,
        payment_method_types=["sepa_debit"],
    )
    http.post(f"{API}/v1/payment_intents", json=processing)
    payment = payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="calendar")
    sent = _form(http.calls[0])
    assert sent["payment_method_types[0]"] == "sepa_debit"
    assert "payment_method_types[1]" not in sent
    assert sent["mandate"] == "mandate_sepa_1" and sent["off_session"] == "true"
    assert "return_url" not in sent
    assert payment.status == PaymentStatus.PROCESSING
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0
