import json
import time

import pytest

from billing.invoices.models import InvoiceStatus
from billing.payments import services
from billing.payments.models import (
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    RefundStatus,
    WebhookEvent,
    WebhookEventStatus,
)
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import (
    WEBHOOK_SECRET,
    deliver_twice_shuffled,
    event,
    load,
    post_event,
    sign,
    use_stripe,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stripe(settings):
    use_stripe(settings)


@pytest.fixture
def invoice(customer):
    customer.stripe_customer_id = "cus_QXg1o8vcGmoR32"
    customer.save()
    return make_invoice(customer=customer)


@pytest.fixture
def checkout_payment(invoice):
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payment.provider_checkout_id = f"cs_test_{payment.pk}"
    payment.checkout_url = f"https://checkout.stripe.com/c/pay/cs_test_{payment.pk}"
    payment.save()
    return payment


def _meta(payment):
    return {
        "invoice_id": str(payment.invoice_id),
        "invoice_number": payment.invoice.number,
        "payment_id": str(payment.pk),
    }


def _session(payment, **kw):
    fields = dict(
        id=payment.provider_checkout_id,
        amount_total=to_minor_units(payment.amount),
        amount_subtotal=to_minor_units(payment.amount),
        currency=payment.currency.lower(),
        customer="cus_QXg1o8vcGmoR32",
        client_reference_id=payment.invoice.number,
        metadata=_meta(payment),
        payment_intent=f"pi_test_{payment.pk}",
        payment_status="paid",
        status="complete",
    )
    return load("checkout_session", **{**fields, **kw})


def _intent(payment, status="succeeded", **kw):
    fields = dict(
        id=f"pi_test_{payment.pk}",
        amount=to_minor_units(payment.amount),
        amount_received=to_minor_units(payment.amount) if status == "succeeded" else 0,
        currency=payment.currency.lower(),
        customer="cus_QXg1o8vcGmoR32",
        metadata=_meta(payment),
        status=status,
        latest_charge=f"ch_test_{payment.pk}",
        last_payment_error=None,
        next_action=None,
    )
    return load("payment_intent", **{**fields, **kw})


def _charge(payment, refunded_minor=0, refunds=()):
    return load(
        "charge",
        id=f"ch_test_{payment.pk}",
        amount=to_minor_units(payment.amount),
        amount_captured=to_minor_units(payment.amount),
        amount_refunded=refunded_minor,
        refunded=refunded_minor == to_minor_units(payment.amount),
        currency=payment.currency.lower(),
        payment_intent=f"pi_test_{payment.pk}",
        metadata=_meta(payment),
        refunds={
            "object": "list",
            "data": [
                load(
                    "refund",
                    id=rid,
                    amount=amount,
                    charge=f"ch_test_{payment.pk}",
                    payment_intent=f"pi_test_{payment.pk}",
                    currency=payment.currency.lower(),
                )
                for rid, amount in refunds
            ],
            "has_more": False,
            "url": f"/v1/charges/ch_test_{payment.pk}/refunds",
        },
    )


def _all_ok(responses):
    assert [r.status_code for r in responses] == [200] * len(responses)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_checkout_completed_and_intent_succeeded_pay_once(client, checkout_payment, seed):
    invoice = checkout_payment.invoice
    events = [
        event("checkout.session.completed", _session(checkout_payment)),
        event("payment_intent.succeeded", _intent(checkout_payment)),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    invoice.refresh_from_db()
    checkout_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
    assert checkout_payment.status == PaymentStatus.SUCCEEDED
    assert checkout_payment.provider_payment_id == f"pi_test_{checkout_payment.pk}"
    assert checkout_payment.provider_charge_id == f"ch_test_{checkout_payment.pk}"
    stored = WebhookEvent.objects.all()
    assert stored.count() == 2
    assert {e.status for e in stored} == {WebhookEventStatus.PROCESSED}
    assert {e.deliveries for e in stored} == {2}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_failure_and_success_in_any_order_end_paid(client, checkout_payment, seed):
    failed = _intent(
        checkout_payment,
        status="requires_payment_method",
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        },
    )
    events = [
        event("payment_intent.payment_failed", failed),
        event("payment_intent.succeeded", _intent(checkout_payment)),
        event("checkout.session.completed", _session(checkout_payment)),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.SUCCEEDED
    assert checkout_payment.invoice.status == InvoiceStatus.PAID


def test_decline_keeps_the_invoice_open_with_the_reason(client, checkout_payment):
    failed = _intent(
        checkout_payment,
        status="requires_payment_method",
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        },
    )
    _all_ok(deliver_twice_shuffled(client, [event("payment_intent.payment_failed", failed)]))
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.FAILED
    assert checkout_payment.failure_code == "insufficient_funds"
    assert checkout_payment.failure_message == "Your card has insufficient funds."
    assert checkout_payment.invoice.status == InvoiceStatus.OPEN


def test_requires_action_is_recorded(client, checkout_payment):
    intent = _intent(checkout_payment, status="requires_action")
    _all_ok(deliver_twice_shuffled(client, [event("payment_intent.requires_action", intent)]))
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.REQUIRES_ACTION


@pytest.mark.parametrize("seed", [0, 1])
def test_expired_session_cancels_the_attempt(client, checkout_payment, seed):
    session = _session(checkout_payment, payment_status="unpaid", status="expired")
    session["payment_intent"] = None
    _all_ok(deliver_twice_shuffled(client, [event("checkout.session.expired", session)], seed=seed))
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.CANCELLED
    assert checkout_payment.invoice.status == InvoiceStatus.OPEN


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_refund_moves_the_invoice_to_refund(client, checkout_payment, seed):
    full = to_minor_units(checkout_payment.amount)
    events = [
        event("checkout.session.completed", _session(checkout_payment)),
        event("charge.refunded", _charge(checkout_payment, full, [("re_test_1", full)])),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    invoice = checkout_payment.invoice
    invoice.refresh_from_db()
    checkout_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.REFUND
    assert checkout_payment.status == PaymentStatus.REFUNDED
    assert checkout_payment.refunds.get().status == RefundStatus.SUCCEEDED


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partial_refunds_keep_paid_and_show_the_amount(client, checkout_payment, seed):
    events = [
        event("payment_intent.succeeded", _intent(checkout_payment)),
        event("charge.refunded", _charge(checkout_payment, 1000, [("re_a", 1000)])),
        event("charge.refunded", _charge(checkout_payment, 3000, [("re_a", 1000), ("re_b", 2000)])),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    invoice = checkout_payment.invoice
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert str(invoice.amount_refunded) == "30.00"
    assert checkout_payment.refunds.count() == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lost_dispute_moves_the_invoice_to_refund(client, checkout_payment, seed):
    dispute = load(
        "dispute",
        id="dp_test_1",
        amount=to_minor_units(checkout_payment.amount),
        charge=f"ch_test_{checkout_payment.pk}",
        payment_intent=f"pi_test_{checkout_payment.pk}",
        currency="eur",
    )
    events = [
        event("payment_intent.succeeded", _intent(checkout_payment)),
        event("charge.dispute.created", {**dispute, "status": "needs_response"}),
        event("charge.dispute.closed", {**dispute, "status": "lost"}),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    checkout_payment.refresh_from_db()
    assert checkout_payment.dispute_status == "lost"
    assert checkout_payment.invoice.status == InvoiceStatus.REFUND


def test_won_dispute_keeps_paid(client, checkout_payment):
    dispute = load(
        "dispute",
        id="dp_test_2",
        charge=f"ch_test_{checkout_payment.pk}",
        payment_intent=f"pi_test_{checkout_payment.pk}",
    )
    events = [
        event("payment_intent.succeeded", _intent(checkout_payment)),
        event("charge.dispute.created", {**dispute, "status": "needs_response"}),
        event("charge.dispute.closed", {**dispute, "status": "won"}),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=5))
    checkout_payment.refresh_from_db()
    assert checkout_payment.dispute_status == "won"
    assert checkout_payment.invoice.status == InvoiceStatus.PAID


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_payment_method_attach_update_detach_in_any_order(client, invoice, seed):
    pm = load("payment_method", id="pm_test_1", customer="cus_QXg1o8vcGmoR32")
    updated = {**pm, "card": {**pm["card"], "exp_year": 2031}}
    events = [
        event("payment_method.attached", pm),
        event("payment_method.updated", updated),
        event("payment_method.detached", {**pm, "customer": None}),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    assert not PaymentMethod.objects.exists()


@pytest.mark.parametrize("seed", [0, 1])
def test_payment_method_attached_is_saved_as_default(client, invoice, seed):
    pm = load("payment_method", id="pm_test_2", customer="cus_QXg1o8vcGmoR32")
    events = [event("payment_method.attached", pm)]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    method = PaymentMethod.objects.get()
    assert (method.customer, method.brand, method.last4, method.is_default) == (
        invoice.customer,
        "visa",
        "4242",
        True,
    )


def test_bad_signature_is_400_and_stored_invalid(client, checkout_payment):
    evt = event("payment_intent.succeeded", _intent(checkout_payment))
    response = post_event(client, evt, secret="whsec_wrong")
    assert response.status_code == 400
    stale = post_event(client, evt, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 400
    unsigned = client.post("/stripe/", data=json.dumps(evt), content_type="application/json")
    assert unsigned.status_code == 400
    # One sample per address and minute counts them (tests/security/test_webhook_flood.py).
    sample = WebhookEvent.objects.get(status=WebhookEventStatus.INVALID)
    assert sample.deliveries == 3
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.PENDING


def test_tampered_payload_is_rejected(client, checkout_payment):
    evt = event("payment_intent.succeeded", _intent(checkout_payment))
    payload = json.dumps(evt)
    header = sign(payload)
    tampered = payload.replace(str(to_minor_units(checkout_payment.amount)), "1")
    response = client.post(
        "/stripe/", data=tampered, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400


def test_unknown_event_type_is_ignored(client):
    evt = event("plan.created", {"id": "price_1", "object": "plan"})
    responses = deliver_twice_shuffled(client, [evt])
    _all_ok(responses)
    assert WebhookEvent.objects.get().status == WebhookEventStatus.IGNORED


def test_unknown_invoice_is_logged_for_staff_and_answered_200(client, caplog, checkout_payment):
    intent = _intent(checkout_payment)
    intent.update(id="pi_unknown", metadata={"invoice_id": "999999", "payment_id": "999999"})
    intent["latest_charge"] = "ch_unknown"
    _all_ok(deliver_twice_shuffled(client, [event("payment_intent.succeeded", intent)]))
    assert WebhookEvent.objects.get().note == "unknown payment"
    assert "STAFF" in caplog.text


@pytest.mark.parametrize("seed", [0, 1])
def test_a_delayed_payment_method_that_succeeds_later_pays_once(client, checkout_payment, seed):
    """SEPA-like: the session completes unpaid, then async_payment_succeeded arrives."""
    pending = _session(checkout_payment, payment_status="unpaid")
    events = [
        event("checkout.session.completed", pending),
        event("checkout.session.async_payment_succeeded", _session(checkout_payment)),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.SUCCEEDED
    assert checkout_payment.invoice.status == InvoiceStatus.PAID


@pytest.mark.parametrize("seed", [0, 1])
def test_a_delayed_payment_method_that_fails_keeps_the_invoice_open(client, checkout_payment, seed):
    pending = _session(checkout_payment, payment_status="unpaid")
    events = [
        event("checkout.session.completed", pending),
        event("checkout.session.async_payment_failed", pending),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.FAILED
    assert checkout_payment.failure_code == "async_payment_failed"
    assert checkout_payment.invoice.status == InvoiceStatus.OPEN


def test_our_signature_header_is_what_stripe_python_accepts():
    import stripe

    from tests.fixtures.stripe.helpers import sign

    payload = '{"id": "evt_1", "object": "event"}'
    assert stripe.WebhookSignature.verify_header(payload, sign(payload), WEBHOOK_SECRET, 300)
