"""Stripe's 409 (idempotency_key_in_use, lock_timeout) at the HTTP boundary: "try again
later", never a failed payment. A redelivered charge task racing the original gets this
answer while the original goes through; it must not e-mail "payment failed"."""

import contextlib

import pytest
import responses
from django.core import mail

from billing.collections import tasks as collection_tasks
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import PaymentMethod, PaymentStatus
from billing.payments.providers import ProviderBusy, ProviderUnavailable
from config.celery import app
from core.money import to_minor_units
from tests.factories import MembershipFactory, make_invoice
from tests.fixtures.stripe.helpers import load

pytestmark = pytest.mark.django_db

API = "https://api.stripe.com"

IN_USE = {
    "status": 409,
    "json": {
        "error": {
            "type": "invalid_request_error",
            "code": "idempotency_key_in_use",
            "message": "There is currently another in-progress request using this "
            "Idempotent Key (that probably means you submitted twice, and the other request "
            "is still going through): invoice-1-automatic-1. Please try again later.",
        }
    },
}


@pytest.fixture(autouse=True)
def _stripe(settings):
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_" + "a" * 24
    settings.STRIPE_API_BASE = API
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TASK_MAX_NETWORK_RETRIES = 0


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def invoice(customer):
    MembershipFactory(customer=customer, user__email="payer@example.com")
    invoice = make_invoice(customer=customer, price="123.45")
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
    return invoice


def _succeeded(invoice) -> dict:
    total = to_minor_units(invoice.total)
    return load(
        "payment_intent",
        id="pi_busy_1",
        status="succeeded",
        amount=total,
        amount_received=total,
        currency="eur",
        customer="cus_known",
        latest_charge=load("charge", id="ch_busy_1", amount=total, amount_captured=total),
        last_payment_error=None,
    )


def test_idempotency_key_in_use_leaves_the_attempt_pending_and_mails_nothing(invoice, http):
    http.post(f"{API}/v1/payment_intents", **IN_USE)
    mail.outbox.clear()
    with pytest.raises(ProviderBusy) as raised:
        payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="billing run")
    assert isinstance(raised.value, ProviderUnavailable), "retried like an outage"
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.PENDING
    assert payment.failure_code == "" and payment.failed_at is None
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert mail.outbox == []


def test_the_charge_task_retries_under_the_same_key_and_the_payment_succeeds(invoice, http):
    first = http.post(f"{API}/v1/payment_intents", **IN_USE)
    second = http.post(f"{API}/v1/payment_intents", json=_succeeded(invoice))
    mail.outbox.clear()
    with _retried_like_a_worker():
        result = collection_tasks.charge_invoice.apply(args=[invoice.pk])
    assert result.successful(), result.traceback
    assert first.call_count == second.call_count == 1
    keys = {call.request.headers["Idempotency-Key"] for call in http.calls}
    assert keys == {f"invoice-{invoice.pk}-automatic-1"}
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert not [m for m in mail.outbox if "failed" in m.subject]


def test_a_lock_timeout_409_on_a_refund_leaves_it_pending(invoice, http):
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind="checkout", actor="t"
    )
    payments.payment_record_success(
        payment_id=payment.pk, actor="t", provider_payment_id="pi_paid_1"
    )
    http.post(
        f"{API}/v1/refunds",
        status=409,
        json={"error": {"type": "invalid_request_error", "code": "lock_timeout"}},
    )
    with pytest.raises(ProviderBusy):
        payments.payment_refund(payment_id=payment.pk, amount=None, actor="staff")
    refund = payment.refunds.get()
    assert refund.status == "pending" and refund.provider_refund_id is None


def test_pay_online_answers_try_again_on_409(client, owner, invoice, http):
    http.post(f"{API}/v1/checkout/sessions", **IN_USE)
    client.force_login(owner)
    response = client.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 503
    assert b"already being processed" in response.content
    attempt = invoice.payments.get()
    assert attempt.status == PaymentStatus.PENDING, "the request holding the key decides it"


@contextlib.contextmanager
def _retried_like_a_worker():
    before = app.conf.task_eager_propagates
    app.conf.CELERY_TASK_EAGER_PROPAGATES = False
    try:
        yield
    finally:
        app.conf.CELERY_TASK_EAGER_PROPAGATES = before
