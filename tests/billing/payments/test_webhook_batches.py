"""Stored Stripe events applied in batches (STRIPE_WEBHOOK_APPLY_BATCH_SECONDS > 0): the
endpoint queues at most one "apply what is waiting" task per window per process, due one
window later; workers share the backlog, each event applied once."""

import pytest

from billing.invoices.models import InvoiceStatus
from billing.payments import services, tasks, webhooks
from billing.payments.models import PaymentKind, PaymentStatus, WebhookEvent, WebhookEventStatus
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import WEBHOOK_SECRET, event, load, post_event
from tests.threads import run_together

WINDOW = 0.05


@pytest.fixture(autouse=True)
def _stripe(settings):
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_" + "a" * 24
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_API_BASE = "https://api.stripe.invalid"
    settings.STRIPE_WEBHOOK_APPLY_BATCH_SECONDS = WINDOW


def _pending_payments(n: int) -> list:
    return [
        services.payment_create(
            invoice_id=make_invoice().pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
        )
        for _ in range(n)
    ]


def _succeeded(payment) -> dict:
    intent = load(
        "payment_intent",
        id=f"pi_batch_{payment.pk}",
        amount=to_minor_units(payment.amount),
        amount_received=to_minor_units(payment.amount),
        currency=payment.currency.lower(),
        metadata={"invoice_id": str(payment.invoice_id), "payment_id": str(payment.pk)},
        status="succeeded",
        latest_charge=f"ch_batch_{payment.pk}",
        last_payment_error=None,
        next_action=None,
    )
    return event("payment_intent.succeeded", intent)


@pytest.mark.django_db
def test_a_burst_queues_one_wake_up_per_window_due_a_window_later(client, monkeypatch):
    queued: list[tuple[str, float | None]] = []
    monkeypatch.setattr(
        webhooks,
        "enqueue",
        lambda task, *args, countdown=None: queued.append((task.name, countdown)) or True,
    )
    clock = iter([100.0, 100.01, 100.02, 100.2])
    monkeypatch.setattr(webhooks.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(webhooks, "_last_wake", -1e9)
    payments = _pending_payments(4)
    for payment in payments:
        assert post_event(client, _succeeded(payment)).status_code == 200
    # Three events within one window share one wake-up; the fourth, later, queues its own.
    assert queued == [("payments.apply_waiting_webhook_events", WINDOW)] * 2
    assert WebhookEvent.objects.filter(status=WebhookEventStatus.RECEIVED).count() == 4
    assert tasks.apply_waiting_webhook_events() == 4
    for payment in payments:
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.SUCCEEDED
        assert payment.invoice.status == InvoiceStatus.PAID
    assert tasks.apply_waiting_webhook_events() == 0, "nothing waits any more"


@pytest.mark.django_db(transaction=True)
def test_two_workers_draining_the_same_backlog_apply_each_event_once(client, monkeypatch):
    monkeypatch.setattr(webhooks, "enqueue", lambda *a, **kw: True)  # no worker runs here
    payments = _pending_payments(8)
    for payment in payments:
        post_event(client, _succeeded(payment), apply=False)
    results, errors = run_together(
        webhooks.webhook_events_apply_waiting, webhooks.webhook_events_apply_waiting
    )
    assert errors == []
    assert sum(results) >= 8
    assert not WebhookEvent.objects.exclude(status=WebhookEventStatus.PROCESSED).exists()
    for payment in payments:
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.SUCCEEDED
        assert payment.invoice.status == InvoiceStatus.PAID
        assert payment.invoice.amount_paid == payment.amount, "credited once"
