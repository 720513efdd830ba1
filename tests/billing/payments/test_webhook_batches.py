"""Stored Stripe events applied in batches (STRIPE_WEBHOOK_APPLY_BATCH_SECONDS > 0): the
endpoint queues at most one "apply what is waiting" task per window per process, due one
window later; workers share the backlog, each event applied once."""

import pytest

from billing.invoices.models import InvoiceStatus
from billing.payments import services, tasks, webhooks
from billing.payments.models import PaymentKind, PaymentStatus, WebhookEvent, WebhookEventStatus
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import event, load, post_event, use_stripe
from tests.threads import run_together

WINDOW = 0.05


@pytest.fixture(autouse=True)
def _stripe(settings):
    use_stripe(settings)
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


@pytest.mark.django_db
def test_a_batch_costs_a_fixed_number_of_queries_per_event(client, django_assert_max_num_queries):
    """Per success event: the service's savepoint, invoice and payment locked, payment and
    invoice written, two audit entries, the event's own savepoint (10), and for an invoice
    of a contract the standing check (4: overdue left? the contract re-read under lock in
    its savepoint); per batch: the claim, the payments of all its events (read once, handed
    to each apply), the status update, the waiting-events look and the empty claim that
    ends the drain."""
    counts = {}
    for n in (2, 8):
        for payment in _pending_payments(n):
            post_event(client, _succeeded(payment), apply=False)
        with django_assert_max_num_queries(14 * n + 10) as captured:
            assert webhooks.webhook_events_apply_waiting(batch=50) == n
        counts[n] = len(captured)
        payment_reads = [
            q["sql"]
            for q in captured.captured_queries
            if q["sql"].startswith("SELECT") and 'FROM "payments_payment"' in q["sql"]
        ]
        unlocked = [sql for sql in payment_reads if "FOR UPDATE" not in sql]
        assert len(unlocked) == 1, unlocked  # the batch's one read, not one per event
    assert (counts[8] - counts[2]) / 6 <= 14, counts
    assert not WebhookEvent.objects.exclude(status=WebhookEventStatus.PROCESSED).exists()


@pytest.mark.django_db(transaction=True)
def test_a_batch_publishes_each_kind_of_follow_up_once(client, monkeypatch):
    from core import queue

    monkeypatch.setattr(webhooks, "enqueue", lambda *a, **kw: True)  # no wake-ups here
    published: list[tuple[str, tuple]] = []
    monkeypatch.setattr(
        queue, "enqueue", lambda task, *args, **kw: published.append((task.name, args)) or True
    )
    payments = _pending_payments(5)
    published.clear()
    for payment in payments:
        post_event(client, _succeeded(payment), apply=False)
    assert webhooks.webhook_events_apply_waiting() == 5
    names = sorted(name for name, _args in published)
    assert names == ["core.run_tasks", "core.run_tasks"], published
    calls = sorted(tuple(call[0] for call in args[0]) for _name, args in published)
    assert calls == [
        ("collections.notify_invoice_paid",) * 5,
        ("invoices.render_invoice_pdf",) * 5,
    ]
    invoice_ids = {p.invoice_id for p in payments}
    for _name, (batch,) in published:
        assert {args[0] for _task, args in batch} == invoice_ids


@pytest.mark.django_db
def test_a_failing_event_in_a_batch_fails_alone(client, monkeypatch):
    payments = _pending_payments(3)
    for payment in payments:
        post_event(client, _succeeded(payment), apply=False)
    real = webhooks.provider_event_apply_to_payment
    broken_id = payments[1].pk

    def apply(event, **kwargs):
        result = real(event, **kwargs)
        if event.payment_id == broken_id:
            raise RuntimeError("after its writes")
        return result

    monkeypatch.setattr(webhooks, "provider_event_apply_to_payment", apply)
    assert webhooks.webhook_events_apply_waiting(batch=10) == 3
    statuses = {e.object_id: (e.status, e.attempts) for e in WebhookEvent.objects.all()}
    assert statuses[f"pi_batch_{broken_id}"] == (WebhookEventStatus.FAILED, 1)
    for payment in payments:
        payment.refresh_from_db()
        if payment.pk == broken_id:
            # Its savepoint was rolled back: nothing of it stayed.
            assert payment.status == PaymentStatus.PENDING
            assert payment.invoice.status == InvoiceStatus.OPEN
        else:
            assert statuses[f"pi_batch_{payment.pk}"] == (WebhookEventStatus.PROCESSED, 1)
            assert payment.invoice.status == InvoiceStatus.PAID


@pytest.mark.django_db
def test_run_tasks_queues_a_failing_call_again_on_its_own(monkeypatch):
    from celery import current_app

    from core import queue
    from core import tasks as core_tasks

    ran, requeued = [], []

    def flaky(value):
        if value == 2:
            raise OSError("storage down")
        ran.append(value)

    flaky.name = "tests.flaky"
    # Not registered for good: the app's task list is checked elsewhere (PortalTask only).
    monkeypatch.setitem(current_app.tasks, "tests.flaky", flaky)
    monkeypatch.setattr(queue, "enqueue", lambda task, *args, **kw: requeued.append(args) or True)
    calls = [["tests.flaky", [1]], ["tests.flaky", [2]], ["tests.flaky", [3]]]
    assert core_tasks.run_tasks(calls) == 2
    assert ran == [1, 3] and requeued == [(2,)]
