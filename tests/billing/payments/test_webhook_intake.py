"""The endpoint stores and answers; workers apply (claiming with SKIP LOCKED); a sweep
retries what failed or was never picked up; staff see what is stuck."""

import datetime
import json

import psycopg
import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from billing.invoices.models import InvoiceStatus
from billing.payments import services, tasks, webhooks
from billing.payments.models import PaymentKind, PaymentStatus, WebhookEvent, WebhookEventStatus
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import event, load, post_event, use_stripe

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stripe(settings):
    use_stripe(settings)


@pytest.fixture
def payment(customer):
    invoice = make_invoice(customer=customer)
    return services.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )


def _succeeded(payment) -> dict:
    intent = load(
        "payment_intent",
        id=f"pi_test_{payment.pk}",
        amount=to_minor_units(payment.amount),
        amount_received=to_minor_units(payment.amount),
        currency=payment.currency.lower(),
        metadata={"invoice_id": str(payment.invoice_id), "payment_id": str(payment.pk)},
        status="succeeded",
        latest_charge=f"ch_test_{payment.pk}",
        last_payment_error=None,
        next_action=None,
    )
    return event("payment_intent.succeeded", intent)


def _is_paid(payment) -> bool:
    payment.refresh_from_db()
    return payment.status == PaymentStatus.SUCCEEDED and (
        payment.invoice.status == InvoiceStatus.PAID
    )


def test_the_endpoint_stores_and_answers_without_applying(client, payment):
    response = post_event(client, _succeeded(payment), apply=False)
    assert response.status_code == 200 and response.content == b"received"
    stored = WebhookEvent.objects.get()
    assert stored.status == WebhookEventStatus.RECEIVED and stored.attempts == 0
    assert not _is_paid(payment)
    assert tasks.apply_webhook_event(stored.pk) == WebhookEventStatus.PROCESSED
    assert _is_paid(payment)
    # Once: a second apply (a redelivery's task, the sweep) changes nothing.
    assert tasks.apply_webhook_event(stored.pk) == WebhookEventStatus.PROCESSED
    stored.refresh_from_db()
    assert stored.attempts == 1
    assert payment.invoice.payments.get().amount_received == payment.amount


def test_a_failing_event_is_marked_for_staff_and_retried_by_the_sweep(client, payment, monkeypatch):
    real = webhooks.provider_event_apply_to_payment

    def broken(*args, **kwargs):
        raise RuntimeError("ledger unavailable")

    monkeypatch.setattr(webhooks, "provider_event_apply_to_payment", broken)
    assert post_event(client, _succeeded(payment)).status_code == 200
    stored = WebhookEvent.objects.get()
    assert stored.status == WebhookEventStatus.FAILED and stored.attempts == 1
    assert "ledger unavailable" in stored.note
    assert not _is_paid(payment)

    monkeypatch.setattr(webhooks, "provider_event_apply_to_payment", real)
    assert tasks.sweep_webhook_events() == 0, "not before RETRY_AFTER"
    later = timezone.now() + webhooks.RETRY_AFTER + datetime.timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        assert tasks.sweep_webhook_events() == 1
    stored.refresh_from_db()
    assert stored.status == WebhookEventStatus.PROCESSED and stored.attempts == 2
    assert _is_paid(payment)


def test_the_sweep_gives_up_after_max_attempts(client, payment, monkeypatch):
    monkeypatch.setattr(webhooks, "provider_event_apply_to_payment", lambda *a, **k: 1 / 0)
    post_event(client, _succeeded(payment))
    WebhookEvent.objects.update(attempts=webhooks.MAX_ATTEMPTS)
    later = timezone.now() + datetime.timedelta(days=1)
    with time_machine.travel(later, tick=False):
        assert tasks.sweep_webhook_events() == 0
    assert WebhookEvent.objects.get().status == WebhookEventStatus.FAILED


def test_an_event_whose_message_was_lost_is_applied_by_the_sweep(client, payment):
    post_event(client, _succeeded(payment), apply=False)
    assert tasks.sweep_webhook_events() == 0, "its own task gets PICKUP_GRACE first"
    later = timezone.now() + webhooks.PICKUP_GRACE + datetime.timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        assert tasks.sweep_webhook_events() == 1
    assert _is_paid(payment)


def test_a_redelivery_of_a_failed_event_queues_it_again(client, payment, monkeypatch):
    real = webhooks.provider_event_apply_to_payment
    evt = _succeeded(payment)
    monkeypatch.setattr(webhooks, "provider_event_apply_to_payment", lambda *a, **k: 1 / 0)
    post_event(client, evt)
    monkeypatch.setattr(webhooks, "provider_event_apply_to_payment", real)
    post_event(client, evt)
    stored = WebhookEvent.objects.get()
    assert stored.deliveries == 2 and stored.status == WebhookEventStatus.PROCESSED
    assert _is_paid(payment)


@pytest.mark.django_db(transaction=True)
def test_an_event_held_by_another_worker_is_skipped_not_waited_for(customer):
    invoice = make_invoice(customer=customer)
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    stored = WebhookEvent.objects.create(
        event_id="evt_held", type="payment_intent.succeeded", body=json.dumps(_succeeded(payment))
    )
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    ) as other:
        other.execute("SELECT 1 FROM payments_webhookevent WHERE id = %s FOR UPDATE", [stored.pk])
        assert webhooks.webhook_event_process(event_pk=stored.pk) == "claimed"
        stored.refresh_from_db()
        assert stored.status == WebhookEventStatus.RECEIVED and stored.attempts == 0
    assert webhooks.webhook_event_process(event_pk=stored.pk) == WebhookEventStatus.PROCESSED
    assert _is_paid(payment)


def test_staff_filter_events_stuck_longer_than_an_age(client, staff, payment):
    post_event(client, _succeeded(payment), apply=False)
    fresh = post_event(client, event("plan.created", {"id": "price_1"}), apply=False)
    assert fresh.status_code == 200
    WebhookEvent.objects.filter(type="payment_intent.succeeded").update(
        received_at=timezone.now() - datetime.timedelta(hours=2)
    )
    client.force_login(staff)
    url = "/admin/payments/webhookevent/"
    stuck = client.get(url, {"stuck": "1h"})
    assert stuck.status_code == 200
    assert [e.type for e in stuck.context["cl"].result_list] == ["payment_intent.succeeded"]
    assert client.get(url, {"stuck": "1d"}).context["cl"].result_list.count() == 0
    everything = client.get(url).context["cl"].result_list
    assert {e.type for e in everything} == {"payment_intent.succeeded", "plan.created"}
