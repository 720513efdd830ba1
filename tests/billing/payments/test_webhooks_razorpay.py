"""Razorpay's webhooks at /razorpay/: verified by X-Razorpay-Signature, stored once per
provider and event id, applied by the same services as Stripe's in any order."""

import datetime
import json
from decimal import Decimal

import pytest
from django.core.cache import cache

from billing.invoices.models import InvoiceStatus
from billing.payments import services
from billing.payments.models import (
    Payment,
    PaymentKind,
    PaymentStatus,
    Refund,
    RefundStatus,
    WebhookEvent,
    WebhookEventStatus,
)
from billing.payments.webhooks import webhook_events_sweep
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.razorpay.helpers import (
    KEY_ID,
    KEY_SECRET,
    WEBHOOK_SECRET,
    deliver_twice_shuffled,
    event,
    failed_payment_entity,
    link_paid,
    payment_entity,
    post_event,
    refund_entity,
    sign,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _razorpay(settings):
    # The refusal counter lives in the cache per address and minute; each test starts at 0.
    cache.clear()
    settings.RAZORPAY_KEY_ID = KEY_ID
    settings.RAZORPAY_KEY_SECRET = KEY_SECRET
    settings.RAZORPAY_WEBHOOK_SECRET = WEBHOOK_SECRET


@pytest.fixture
def invoice(customer):
    return make_invoice(customer=customer, currency="INR", price="5000.00")


@pytest.fixture
def link_payment(invoice):
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="razorpay", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payment.provider_checkout_id = f"plink_Fc8lXILA{payment.pk:06d}"
    payment.checkout_url = f"https://rzp.io/i/{payment.pk}"
    payment.save()
    return payment


def _captured(payment, pay_id, **kw):
    return event(
        "payment.captured",
        payment=payment_entity(payment, pay_id=pay_id, link_id=payment.provider_checkout_id, **kw),
    )


def test_link_paid_and_captured_twice_and_shuffled_credit_once(client, invoice, link_payment):
    pay_id = "pay_Fc8mUeDrEKf08Y"
    events = [
        ("Ev_link_paid_1", link_paid(link_payment, pay_id=pay_id)),
        ("Ev_captured_1", _captured(link_payment, pay_id)),
    ]
    for seed in range(3):
        responses_ = deliver_twice_shuffled(client, events, seed=seed)
        assert [r.status_code for r in responses_] == [200] * 4
    invoice.refresh_from_db()
    link_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.amount_paid == invoice.total == Decimal("5000.00") + invoice.tax
    assert (link_payment.status, link_payment.provider_payment_id) == (
        PaymentStatus.SUCCEEDED,
        pay_id,
    )
    assert (link_payment.amount_received, link_payment.currency_received) == (
        invoice.total,
        "INR",
    )
    assert link_payment.method_brand == "UPI"
    assert invoice.payments.count() == 1
    stored = WebhookEvent.objects.filter(provider="razorpay").order_by("event_id")
    assert [(e.event_id, e.type, e.deliveries, e.status) for e in stored] == [
        ("Ev_captured_1", "payment.captured", 6, WebhookEventStatus.PROCESSED),
        ("Ev_link_paid_1", "payment_link.paid", 6, WebhookEventStatus.PROCESSED),
    ]


def test_captured_of_an_unknown_link_waits_and_is_replayed_after_link_paid(
    client, invoice, link_payment
):
    """A payment.captured whose description names no link of ours (not the documented "#id")
    is kept as "unknown payment"; once payment_link.paid names its payment, it is replayed
    and finds the payment already credited."""
    pay_id = "pay_Gd9nVfEsFLg19Z"
    captured = event(
        "payment.captured", payment=payment_entity(link_payment, pay_id=pay_id, description="x")
    )
    post_event(client, captured, event_id="Ev_captured_first")
    assert WebhookEvent.objects.get(event_id="Ev_captured_first").note == "unknown payment"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    post_event(client, link_paid(link_payment, pay_id=pay_id), event_id="Ev_paid_second")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
    assert WebhookEvent.objects.get(event_id="Ev_captured_first").note == "applied"
    assert Payment.objects.get(pk=link_payment.pk).amount_credited == invoice.total


def test_bad_signature_is_refused_and_stored_invalid(client, invoice, link_payment):
    paid = link_paid(link_payment, pay_id="pay_Bad0000000001")
    response = post_event(client, paid, event_id="Ev_forged", signature="0" * 64)
    assert response.status_code == 400
    missing = post_event(client, paid, event_id="Ev_unsigned", signature=False)
    assert missing.status_code == 400
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0
    invalid = WebhookEvent.objects.get()
    assert (invalid.provider, invalid.status, invalid.event_id) == (
        "razorpay",
        WebhookEventStatus.INVALID,
        None,
    )
    assert "signature does not match" in invalid.note
    # The second refusal from the same address within the minute is counted on the sample.
    assert invalid.deliveries == 2
    assert '"payment_link.paid"' in invalid.body


def test_without_a_webhook_secret_nothing_is_genuine(client, settings, invoice, link_payment):
    settings.RAZORPAY_WEBHOOK_SECRET = ""
    paid = link_paid(link_payment, pay_id="pay_NoSecret000001")
    body = json.dumps(paid).encode()
    response = client.post(
        "/razorpay/",
        data=body,
        content_type="application/json",
        HTTP_X_RAZORPAY_SIGNATURE=sign(body, secret=""),
        HTTP_X_RAZORPAY_EVENT_ID="Ev_empty_key",
    )
    assert response.status_code == 400
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN


def test_a_signature_made_with_another_secret_is_refused(client, invoice, link_payment):
    paid = link_paid(link_payment, pay_id="pay_OtherSecret01")
    body = json.dumps(paid).encode()
    response = post_event(
        client, paid, event_id="Ev_other", signature=sign(body, secret="someone-else")
    )
    assert response.status_code == 400
    assert WebhookEvent.objects.get().status == WebhookEventStatus.INVALID


def test_same_event_id_at_stripe_and_razorpay_are_two_events(client, invoice, link_payment):
    WebhookEvent.objects.create(provider="stripe", event_id="Ev_shared", type="charge.refunded")
    post_event(client, link_paid(link_payment, pay_id="pay_Shared000001"), event_id="Ev_shared")
    assert sorted(WebhookEvent.objects.values_list("provider", "deliveries")) == [
        ("razorpay", 1),
        ("stripe", 1),
    ]
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_other_currency_is_held_not_credited(client, invoice, link_payment):
    paid = link_paid(
        link_payment,
        pay_id="pay_Usd000000001",
        amount_minor=to_minor_units(link_payment.amount),
        currency="USD",
    )
    post_event(client, paid, event_id="Ev_usd")
    invoice.refresh_from_db()
    link_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0
    assert link_payment.status == PaymentStatus.HELD
    assert link_payment.amount_credited == 0
    assert "for an invoice in INR" in link_payment.held_reason


def test_amount_without_a_number_is_held(client, invoice, link_payment):
    paid = link_paid(link_payment, pay_id="pay_NoAmount00001")
    paid["payload"]["payment"]["entity"]["amount"] = None
    post_event(client, paid, event_id="Ev_no_amount")
    link_payment.refresh_from_db()
    invoice.refresh_from_db()
    assert link_payment.status == PaymentStatus.HELD
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0


def test_less_than_asked_is_credited_and_the_rest_stays_due(client, invoice, link_payment):
    paid = link_paid(link_payment, pay_id="pay_Short0000001", amount_minor=100_00)
    post_event(client, paid, event_id="Ev_short")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.amount_paid == Decimal("100.00")
    assert invoice.amount_remaining == invoice.total - Decimal("100.00")


def test_failed_then_paid_in_any_order_ends_paid(client, invoice, link_payment):
    link = link_payment.provider_checkout_id
    failed = event(
        "payment.failed",
        payment=failed_payment_entity(link_payment, pay_id="pay_Failed000001", link_id=link),
    )
    events = [
        ("Ev_failed", failed),
        ("Ev_paid", link_paid(link_payment, pay_id="pay_Paid00000001")),
    ]
    deliver_twice_shuffled(client, events, seed=4)
    invoice.refresh_from_db()
    link_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert (link_payment.status, link_payment.provider_payment_id) == (
        PaymentStatus.SUCCEEDED,
        "pay_Paid00000001",
    )


def test_payment_failed_records_the_failure(client, invoice, link_payment):
    link = link_payment.provider_checkout_id
    failed = event(
        "payment.failed",
        payment=failed_payment_entity(link_payment, pay_id="pay_Failed000002", link_id=link),
    )
    post_event(client, failed, event_id="Ev_failed_only")
    post_event(client, failed, event_id="Ev_failed_only")
    link_payment.refresh_from_db()
    invoice.refresh_from_db()
    assert link_payment.status == PaymentStatus.FAILED
    assert link_payment.failure_code == "incorrect_pin"
    assert "UPI PIN" in link_payment.failure_message
    assert invoice.status == InvoiceStatus.OPEN


def _paid_payment(client, link_payment, pay_id):
    post_event(client, link_paid(link_payment, pay_id=pay_id), event_id=f"Ev_paid_{pay_id}")
    link_payment.refresh_from_db()
    return link_payment


def test_refund_processed_twice_and_before_the_payment_refunds_once(client, invoice, link_payment):
    pay_id = "pay_Refunded00001"
    total_minor = to_minor_units(link_payment.amount)
    refunded = event(
        "refund.processed",
        refund=refund_entity(
            link_payment, refund_id="rfnd_Heax5rxucwf2aS", pay_id=pay_id, amount_minor=total_minor
        ),
        payment=payment_entity(
            link_payment, pay_id=pay_id, status="refunded", amount_refunded=total_minor
        ),
    )
    events = [
        ("Ev_refund_processed", refunded),
        ("Ev_link_paid", link_paid(link_payment, pay_id=pay_id)),
    ]
    deliver_twice_shuffled(client, events, seed=1)
    invoice.refresh_from_db()
    link_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.REFUND
    assert link_payment.status == PaymentStatus.REFUNDED
    assert [(r.provider_refund_id, r.amount, r.status) for r in link_payment.refunds.all()] == [
        ("rfnd_Heax5rxucwf2aS", invoice.total, RefundStatus.SUCCEEDED)
    ]


def test_refund_failed_marks_our_refund_failed(client, invoice, link_payment):
    pay_id = "pay_RefundFails01"
    payment = _paid_payment(client, link_payment, pay_id)
    ours = Refund.objects.create(
        payment=payment,
        amount=Decimal("10.00"),
        idempotency_key=f"payment-{payment.pk}-refund-1",
        provider_refund_id="rfnd_FailsLater001",
    )
    failed = event(
        "refund.failed",
        refund=refund_entity(
            payment,
            refund_id="rfnd_FailsLater001",
            pay_id=pay_id,
            amount_minor=1000,
            status="failed",
        ),
        payment=payment_entity(payment, pay_id=pay_id),
    )
    post_event(client, failed, event_id="Ev_refund_failed")
    post_event(client, failed, event_id="Ev_refund_failed")
    ours.refresh_from_db()
    invoice.refresh_from_db()
    assert ours.status == RefundStatus.FAILED
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_refunded == 0


def test_events_the_worker_never_picked_up_are_applied_by_the_sweep(
    client, invoice, link_payment, time_machine
):
    post_event(
        client, link_paid(link_payment, pay_id="pay_Swept0000001"), event_id="Ev_lost", apply=False
    )
    stored = WebhookEvent.objects.get(event_id="Ev_lost")
    assert stored.status == WebhookEventStatus.RECEIVED
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    time_machine.move_to(stored.received_at + datetime.timedelta(minutes=5))
    assert webhook_events_sweep() == 1
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert WebhookEvent.objects.get(event_id="Ev_lost").status == WebhookEventStatus.PROCESSED


def test_unhandled_types_are_stored_and_ignored(client, invoice, link_payment):
    order_paid = event("order.paid", payment=payment_entity(link_payment, pay_id="pay_Order01"))
    assert post_event(client, order_paid, event_id="Ev_order").status_code == 200
    assert WebhookEvent.objects.get().status == WebhookEventStatus.IGNORED
