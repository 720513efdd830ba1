"""The Stripe provider at the HTTP boundary: what we send, and what we do with the answer."""

import hashlib
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import requests
import responses

from billing.invoices.links import pay_token
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import PaymentKind, PaymentMethod, PaymentStatus, RefundStatus
from billing.payments.providers import CardDeclined
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import event, load, post_event, use_stripe

pytestmark = pytest.mark.django_db

API = "https://api.stripe.com"


@pytest.fixture(autouse=True)
def _stripe(settings):
    use_stripe(settings, api_base=API)


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def invoice(customer):
    return make_invoice(customer=customer, price="123.45")


def _form(call) -> dict:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def _methods(call) -> list[str]:
    sent = _form(call)
    return [
        sent[f"payment_method_types[{i}]"] for i in range(5) if f"payment_method_types[{i}]" in sent
    ]


def test_pay_online_creates_customer_then_checkout_session(client, owner, invoice, http):
    http.post(f"{API}/v1/customers", json=load("customer", id="cus_new1"))
    session = load("checkout_session", id="cs_test_new1", status="open")
    http.post(f"{API}/v1/checkout/sessions", json=session)
    client.force_login(owner)
    response = client.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 303
    assert response["Location"] == session["url"]

    customer_call, session_call = http.calls
    assert customer_call.request.headers["Idempotency-Key"] == f"customer-{invoice.customer_id}"
    sent = _form(session_call)
    payment = invoice.payments.get()
    assert session_call.request.headers["Idempotency-Key"] == payment.idempotency_key
    assert sent["mode"] == "payment"
    assert sent["customer"] == "cus_new1"
    assert sent["client_reference_id"] == invoice.number
    assert sent["line_items[0][price_data][unit_amount]"] == str(
        to_minor_units(invoice.amount_remaining)
    )
    assert sent["line_items[0][price_data][currency]"] == "eur"
    # EUR invoices may be paid by SEPA Direct Debit as well as by card.
    assert _methods(session_call) == ["card", "sepa_debit"]
    assert sent["line_items[0][price_data][product_data][name]"] == f"Invoice {invoice.number}"
    assert sent["line_items[0][quantity]"] == "1"
    assert sent["metadata[invoice_id]"] == str(invoice.pk)
    assert sent["metadata[payment_id]"] == str(payment.pk)
    assert sent["payment_intent_data[metadata][invoice_number]"] == invoice.number
    assert sent["success_url"].startswith(f"http://testserver/invoices/{invoice.number}/pay/done/")
    assert sent["cancel_url"] == f"http://testserver/invoices/{invoice.number}/pay/cancelled/"
    invoice.customer.refresh_from_db()
    assert invoice.customer.stripe_customer_id == "cus_new1"
    assert payment.provider_checkout_id == "cs_test_new1"

    # A second click reuses the open session: nothing more is sent to Stripe.
    again = client.post(f"/invoices/{invoice.number}/pay/")
    assert again["Location"] == session["url"]
    assert len(http.calls) == 2


def test_checkout_speaks_the_language_of_the_page_paid_from(client, owner, customer, http):
    """The PDF's link pays in the invoice's document language whatever the browser says; a
    member paying in the portal gets their own page language (docs/decisions.md, "Pages in
    German": the hosted invoice page's rule, carried on to Stripe's page)."""
    customer.stripe_customer_id = "cus_known"
    customer.document_language = "de"
    customer.save()
    german = make_invoice(customer=customer)
    assert german.document_language == "de"
    for session_id in ("cs_test_link_de", "cs_test_member_en"):
        session = load("checkout_session", id=session_id, status="open")
        http.post(f"{API}/v1/checkout/sessions", json=session)
    link = client.post(
        f"/invoices/{german.number}/pay/",
        {"token": pay_token(german)},
        headers={"accept-language": "en"},
    )
    assert link.status_code == 303
    assert _form(http.calls[-1])["locale"] == "de"

    client.force_login(owner)
    member = client.post(f"/invoices/{german.number}/pay/", headers={"accept-language": "en"})
    assert member.status_code == 303
    assert _form(http.calls[-1])["locale"] == "en"
    assert len(http.calls) == 2


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "json": {"error": {"type": "api_error", "message": "boom"}}},
        {"status": 503, "json": {"error": {"type": "api_error", "message": "down"}}},
        {"status": 429, "json": {"error": {"type": "rate_limit_error", "message": "slow"}}},
        {"body": requests.exceptions.ConnectTimeout("timed out")},
        {"body": requests.exceptions.ConnectionError("unreachable")},
    ],
)
def test_stripe_down_gives_a_clear_message_and_records_the_attempt(
    client, owner, invoice, http, failure
):
    invoice.customer.stripe_customer_id = "cus_known"
    invoice.customer.save()
    http.post(f"{API}/v1/checkout/sessions", **failure)
    client.force_login(owner)
    response = client.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 503
    assert b"not reachable right now" in response.content
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_code == "provider_unavailable"


def test_automatic_charge_succeeds_off_session(invoice, http):
    invoice.customer.stripe_customer_id = "cus_known"
    invoice.customer.save()
    PaymentMethod.objects.create(
        customer=invoice.customer,
        provider="stripe",
        provider_id="pm_card_1",
        brand="visa",
        last4="4242",
        exp_month=8,
        exp_year=2030,
        is_default=True,
    )
    total = to_minor_units(invoice.total)
    charge = load("charge", id="ch_auto_1", amount=total, amount_captured=total, currency="eur")
    intent = load(
        "payment_intent",
        id="pi_auto_1",
        status="succeeded",
        amount=total,
        amount_received=total,
        currency="eur",
        customer="cus_known",
        latest_charge=charge,
        last_payment_error=None,
    )
    http.post(f"{API}/v1/payment_intents", json=intent)
    payment = payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="billing run")
    sent = _form(http.calls[0])
    assert http.calls[0].request.headers["Idempotency-Key"] == f"invoice-{invoice.pk}-automatic-1"
    assert sent["amount"] == str(to_minor_units(invoice.total)) and sent["currency"] == "eur"
    assert sent["off_session"] == "true" and sent["confirm"] == "true"
    assert sent["payment_method"] == "pm_card_1" and sent["customer"] == "cus_known"
    assert sent["metadata[invoice_id]"] == str(invoice.pk)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert (payment.provider_payment_id, payment.method_last4) == ("pi_auto_1", "4242")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_automatic_charge_decline_keeps_open_with_reason(invoice, http):
    invoice.customer.stripe_customer_id = "cus_known"
    invoice.customer.save()
    PaymentMethod.objects.create(
        customer=invoice.customer,
        provider="stripe",
        provider_id="pm_card_2",
        brand="visa",
        last4="0002",
        exp_month=8,
        exp_year=2030,
        is_default=True,
    )
    declined = load("payment_intent", id="pi_declined", status="requires_payment_method")
    http.post(
        f"{API}/v1/payment_intents",
        status=402,
        json={
            "error": {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "payment_intent": declined,
            }
        },
    )
    payment = payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="billing run")
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_code == "generic_decline"
    assert payment.failure_message == "Your card was declined."
    assert payment.provider_payment_id == "pi_declined"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN


def test_api_pay_with_saved_method_raises_card_declined(invoice, http):
    invoice.customer.stripe_customer_id = "cus_known"
    invoice.customer.save()
    PaymentMethod.objects.create(
        customer=invoice.customer,
        provider="stripe",
        provider_id="pm_card_3",
        brand="visa",
        last4="0002",
        exp_month=8,
        exp_year=2030,
    )
    http.post(
        f"{API}/v1/payment_intents",
        status=402,
        json={"error": {"type": "card_error", "code": "card_declined", "message": "Declined."}},
    )
    with pytest.raises(CardDeclined) as declined:
        payments.invoice_pay_with_saved_method(
            invoice_id=invoice.pk,
            payment_method_id="pm_card_3",
            off_session=False,
            actor="api",
            idempotency_key="abc",
        )
    assert declined.value.message == "Declined."
    digest = hashlib.sha256(b"abc").hexdigest()[:40]
    assert http.calls[0].request.headers["Idempotency-Key"] == f"invoice-{invoice.pk}-api-{digest}"


def _paid_checkout(invoice):
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    return payments.payment_record_success(
        payment_id=payment.pk, actor="t", provider_payment_id="pi_paid_1", provider_charge_id="ch_1"
    )


def test_staff_partial_refund_goes_through_stripe_and_waits_for_the_webhook(client, invoice, http):
    payment = _paid_checkout(invoice)
    http.post(
        f"{API}/v1/refunds",
        json=load("refund", id="re_staff_1", amount=2345, status="succeeded", currency="eur"),
    )
    refund = payments.payment_refund(
        payment_id=payment.pk, amount=Decimal("23.45"), actor="staff", reason="goodwill"
    )
    sent = _form(http.calls[0])
    assert sent == {
        "amount": "2345",
        "payment_intent": "pi_paid_1",
        "metadata[payment_id]": str(payment.pk),
        "metadata[invoice_id]": str(invoice.pk),
    }
    assert http.calls[0].request.headers["Idempotency-Key"] == f"payment-{payment.pk}-refund-1"
    assert refund.status == RefundStatus.PENDING and refund.provider_refund_id == "re_staff_1"
    charge = load(
        "charge",
        id="ch_1",
        payment_intent="pi_paid_1",
        amount=12345,
        amount_refunded=2345,
        refunds={"object": "list", "data": [load("refund", id="re_staff_1", amount=2345)]},
    )
    for _ in range(2):
        assert post_event(client, event("charge.refunded", charge)).status_code == 200
    refund.refresh_from_db()
    invoice.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED and refund.reason == "goodwill"
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_refunded == Decimal("23.45")


def test_duplicate_payment_is_refunded_automatically(
    client, invoice, http, django_capture_on_commit_callbacks
):
    second = payments.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.AUTOMATIC, actor="t"
    )
    _paid_checkout(invoice)
    second.provider_payment_id = "pi_dup_1"
    second.save()
    http.post(f"{API}/v1/refunds", json=load("refund", id="re_dup_1", amount=14691))
    intent = load(
        "payment_intent",
        id="pi_dup_1",
        status="succeeded",
        amount=to_minor_units(second.amount),
        amount_received=to_minor_units(second.amount),
        currency="eur",
        latest_charge="ch_dup_1",
        metadata={"payment_id": str(second.pk), "invoice_id": str(invoice.pk)},
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, event("payment_intent.succeeded", intent)).status_code == 200
    sent = _form(http.calls[0])
    assert sent["reason"] == "duplicate" and sent["amount"] == str(to_minor_units(second.amount))
    assert http.calls[0].request.headers["Idempotency-Key"] == f"payment-{second.pk}-excess-1"
    second.refresh_from_db()
    assert second.is_duplicate
    assert second.refunds.get().provider_refund_id == "re_dup_1"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_reconcile_applies_what_webhooks_missed(invoice, http):
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payment.provider_checkout_id = "cs_missed"
    payment.save()
    intent = load(
        "payment_intent",
        id="pi_missed",
        status="succeeded",
        amount=to_minor_units(invoice.total),
        amount_received=to_minor_units(invoice.total),
        currency="eur",
        latest_charge=load("charge", id="ch_missed"),
        last_payment_error=None,
    )
    session = load(
        "checkout_session",
        id="cs_missed",
        status="complete",
        payment_status="paid",
        payment_intent=intent,
    )
    http.get(f"{API}/v1/checkout/sessions/cs_missed", json=session)
    assert payments.payments_reconcile(actor="t", older_than_minutes=0) == 1
    invoice.refresh_from_db()
    payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert payment.provider_payment_id == "pi_missed"


@pytest.mark.parametrize(
    "currency,methods", [("USD", ["card", "us_bank_account"]), ("GBP", ["card"])]
)
def test_pay_online_offers_the_bank_debit_of_the_currency(client, owner, http, currency, methods):
    invoice = make_invoice(customer=owner.memberships.get().customer, currency=currency)
    invoice.customer.stripe_customer_id = "cus_known"
    invoice.customer.save()
    http.post(f"{API}/v1/checkout/sessions", json=load("checkout_session", status="open"))
    client.force_login(owner)
    assert client.post(f"/invoices/{invoice.number}/pay/").status_code == 303
    (call,) = http.calls
    assert _methods(call) == methods
