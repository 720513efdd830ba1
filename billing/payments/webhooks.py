"""The Stripe webhook endpoint (/stripe/): verify, store raw once per event id, then act.

Our own verified endpoint and event table rather than dj-stripe's: dj-stripe would
also mirror every object (an extra GET /v1/account and its slow migrations) while
the portal's own tables are the system of record; what we need from it is exactly
the signature check, the raw log and de-duplication, which are a few lines here.
"""

import json
import logging

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.payments.models import UNKNOWN_PAYMENT_NOTE, WebhookEvent, WebhookEventStatus

from .providers.base import EventKind, PaymentError
from .providers.stripe_provider import construct_event, event_from_stripe
from .services import find_payment, provider_event_apply

logger = logging.getLogger(__name__)

ACTOR = "stripe webhook"


def _store_invalid(body: str, reason: str) -> None:
    WebhookEvent.objects.create(
        status=WebhookEventStatus.INVALID, body=body[:100_000], note=reason[:1000]
    )


def _was_detached(method_id: str) -> bool:
    """A detached card never comes back at Stripe: later-arriving attach/update events lose."""
    return WebhookEvent.objects.filter(
        type="payment_method.detached", object_id=method_id, status=WebhookEventStatus.PROCESSED
    ).exists()


def webhook_event_process(*, event_pk: int) -> str:
    """Act on one stored event exactly once; the row lock serialises concurrent deliveries."""
    with transaction.atomic():
        stored = WebhookEvent.objects.select_for_update().get(pk=event_pk)
        if stored.status in (WebhookEventStatus.PROCESSED, WebhookEventStatus.IGNORED):
            return stored.status
        result = ""
        event = json.loads(stored.body)
        domain_event = event_from_stripe(event)
        if domain_event is None:
            result, status = "type not handled", WebhookEventStatus.IGNORED
        elif domain_event.kind == EventKind.METHOD_ATTACHED and _was_detached(
            domain_event.method.id
        ):
            result, status = "method already detached", WebhookEventStatus.IGNORED
        else:
            result = provider_event_apply(domain_event, actor=ACTOR)
            status = WebhookEventStatus.PROCESSED
        stored.status = status
        stored.note = result
        stored.processed_at = timezone.now()
        stored.save(update_fields=["status", "note", "processed_at"])
    if result == "applied":
        _retry_unmatched(domain_event)
    return status


def _retry_unmatched(domain_event) -> None:
    """Events that named a payment before we knew its provider ids get another go now."""
    payment = find_payment(domain_event)
    if payment is None:
        return
    refs = [r for r in (payment.provider_payment_id, payment.provider_charge_id) if r]
    waiting = WebhookEvent.objects.filter(note=UNKNOWN_PAYMENT_NOTE)
    for ref in refs:
        for pk in waiting.filter(body__contains=f'"{ref}"').values_list("pk", flat=True):
            WebhookEvent.objects.filter(pk=pk).update(status=WebhookEventStatus.RECEIVED)
            webhook_event_process(event_pk=pk)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    body = request.body.decode("utf-8", errors="replace")
    try:
        event = construct_event(request.body, request.headers.get("Stripe-Signature", ""))
    except ValueError as exc:
        _store_invalid(body, str(exc))
        return HttpResponse("invalid signature", status=400, content_type="text/plain")
    obj = (event.get("data") or {}).get("object") or {}
    try:
        stored, created = WebhookEvent.objects.get_or_create(
            event_id=event["id"],
            defaults={
                "type": event.get("type", "")[:100],
                "object_id": str(obj.get("id", ""))[:100],
                "body": body,
            },
        )
    except IntegrityError:
        stored, created = WebhookEvent.objects.get(event_id=event["id"]), False
    if not created:
        WebhookEvent.objects.filter(pk=stored.pk).update(deliveries=F("deliveries") + 1)
    try:
        status = webhook_event_process(event_pk=stored.pk)
    except PaymentError as exc:
        WebhookEvent.objects.filter(pk=stored.pk).update(
            status=WebhookEventStatus.FAILED, note=exc.message
        )
        return HttpResponse("provider unavailable, retry", status=503, content_type="text/plain")
    except Exception as exc:
        # Stripe retries any non-2xx; the stored event keeps what went wrong for staff.
        logger.exception("webhook %s failed", event.get("id"))
        WebhookEvent.objects.filter(pk=stored.pk).update(
            status=WebhookEventStatus.FAILED, note=repr(exc)[:1000]
        )
        return HttpResponse("processing failed, retry", status=500, content_type="text/plain")
    return HttpResponse(status, content_type="text/plain")
