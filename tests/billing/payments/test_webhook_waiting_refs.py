"""Events that wait for their payment are found again through the ids they carry
(WebhookEventRef), by index: the look after each applied batch does not read the bodies
of every waiting event, so events that never find a payment cannot slow every batch."""

import importlib
import json

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.invoices.models import InvoiceStatus
from billing.payments import services
from billing.payments.models import (
    UNKNOWN_PAYMENT_NOTE,
    PaymentKind,
    WebhookEvent,
    WebhookEventRef,
)
from billing.payments.webhooks import webhook_event_process
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import event, load, post_event, use_stripe

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stripe(settings):
    use_stripe(settings)


def _payment():
    invoice = make_invoice()
    invoice.customer.stripe_customer_id = "cus_QXg1o8vcGmoR32"
    invoice.customer.save()
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payment.provider_checkout_id = f"cs_test_{payment.pk}"
    payment.save()
    return payment


def _dispute(payment, status="lost"):
    return load(
        "dispute",
        id=f"dp_test_{payment.pk}",
        amount=to_minor_units(payment.amount),
        charge=f"ch_test_{payment.pk}",
        payment_intent=f"pi_test_{payment.pk}",
        currency="eur",
        status=status,
    )


def _succeeded(payment):
    return load(
        "payment_intent",
        id=f"pi_test_{payment.pk}",
        amount=to_minor_units(payment.amount),
        amount_received=to_minor_units(payment.amount),
        currency="eur",
        customer="cus_QXg1o8vcGmoR32",
        metadata={"invoice_id": str(payment.invoice_id), "payment_id": str(payment.pk)},
        status="succeeded",
        latest_charge=f"ch_test_{payment.pk}",
        last_payment_error=None,
        next_action=None,
    )


def _strangers(n: int) -> None:
    """n disputes of charges that are not ours: they wait for a payment that never comes."""
    for k in range(n):
        stranger = load(
            "dispute", id=f"dp_other_{k}", charge=f"ch_other_{k}", payment_intent=f"pi_other_{k}"
        )
        stored = WebhookEvent.objects.create(
            event_id=f"evt_other_{k}",
            type="charge.dispute.created",
            object_id=stranger["id"],
            body=json.dumps(event("charge.dispute.created", stranger)),
        )
        webhook_event_process(event_pk=stored.pk)


def _apply_success(client, payment) -> list[str]:
    with CaptureQueriesContext(connection) as seen:
        post_event(client, event("payment_intent.succeeded", _succeeded(payment)))
    return [q["sql"] for q in seen.captured_queries]


def test_a_dispute_that_came_first_is_replayed_when_its_payment_succeeds(client):
    payment = _payment()
    post_event(client, event("charge.dispute.closed", _dispute(payment)))
    waiting = WebhookEvent.objects.get(type="charge.dispute.closed")
    assert waiting.note == UNKNOWN_PAYMENT_NOTE
    assert {f"pi_test_{payment.pk}", f"ch_test_{payment.pk}"} <= set(
        waiting.refs.values_list("ref", flat=True)
    )
    # Keys are not tokens: "charge" as a key is no id.
    assert "charge" not in set(waiting.refs.values_list("ref", flat=True))
    _apply_success(client, payment)
    payment.refresh_from_db()
    assert payment.dispute_status == "lost"
    assert payment.invoice.status == InvoiceStatus.REFUND
    waiting.refresh_from_db()
    assert waiting.note == "applied"


def test_the_look_for_waiting_events_does_not_grow_with_events_that_never_match(client):
    quiet, busy = _payment(), _payment()
    before = _apply_success(client, quiet)
    _strangers(40)
    assert WebhookEvent.objects.filter(note=UNKNOWN_PAYMENT_NOTE).count() == 40
    after = _apply_success(client, busy)
    assert len(after) == len(before)
    looks = [sql for sql in after if "payments_webhookeventref" in sql]
    assert len(looks) == 1
    assert not [sql for sql in after if "LIKE" in sql and '"body"' in sql]
    busy.refresh_from_db()
    assert busy.invoice.status == InvoiceStatus.PAID


def test_events_waiting_before_the_refs_existed_get_them_from_the_migration(client):
    payment = _payment()
    post_event(client, event("charge.dispute.closed", _dispute(payment)))
    WebhookEventRef.objects.all().delete()  # as the rows stored before migration 0010
    migration = importlib.import_module("billing.payments.migrations.0010_webhook_event_refs")
    migration.remember_waiting_refs(apps, None)
    assert WebhookEventRef.objects.filter(ref=f"pi_test_{payment.pk}").exists()
    _apply_success(client, payment)
    payment.refresh_from_db()
    assert payment.dispute_status == "lost"
