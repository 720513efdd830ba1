"""The Stripe webhook endpoint (/stripe/): verify, store raw once per event id, then act.

Our own verified endpoint and event table rather than dj-stripe's: dj-stripe would
also mirror every object (an extra GET /v1/account and its slow migrations) while
the portal's own tables are the system of record; what we need from it is exactly
the signature check, the raw log and de-duplication, which are a few lines here.
"""

import hashlib
import json
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.payments.models import UNKNOWN_PAYMENT_NOTE, WebhookEvent, WebhookEventStatus
from contracts.auth import client_ip

from .providers.base import EventKind, PaymentError
from .providers.stripe_provider import construct_event, event_from_stripe
from .services import find_payment, provider_event_apply

logger = logging.getLogger(__name__)

ACTOR = "stripe webhook"


# A stored sample of a refused request keeps this much of its body.
INVALID_SAMPLE_CHARS = 4_000


def _invalid(request: HttpRequest, body: str, reason: str) -> HttpResponse:
    """Refuse a request that is not a genuine event, keeping a sample, not the flood.

    Per client address and minute the first refusal is stored (its body cut to
    INVALID_SAMPLE_CHARS) and the later ones only counted on that row (`deliveries`);
    past STRIPE_WEBHOOK_INVALID_PER_MINUTE the address gets 429 and nothing is written.
    Stripe itself never fails the check unless the secret is wrong, and retries anyway.
    """
    address = client_ip(request)
    minute = int(time.time() // 60)
    key = f"stripe-invalid:{hashlib.sha256(address.encode()).hexdigest()[:32]}:{minute}"
    try:
        cache.add(key, 0, timeout=120)
        count = cache.incr(key)
        sample_pk = cache.get(f"{key}:pk") if count > 1 else None
    except Exception:
        # Without the counter nothing bounds the writes: store nothing and say so.
        logger.exception("Webhook refusal from %s not counted (cache down)", address)
        return _refused()
    limit = settings.STRIPE_WEBHOOK_INVALID_PER_MINUTE
    if count > limit:
        if count == limit + 1:
            logger.warning("Webhook: over %s refused requests a minute from %s", limit, address)
        return HttpResponse(
            "too many invalid requests",
            status=429,
            content_type="text/plain",
            headers={"Retry-After": "60"},
        )
    if count == 1:
        sample = WebhookEvent.objects.create(
            status=WebhookEventStatus.INVALID,
            body=_text(body[:INVALID_SAMPLE_CHARS]),
            note=_text(f"from {address or 'unknown address'}: {reason}"[:1000]),
        )
        try:
            cache.set(f"{key}:pk", sample.pk, timeout=120)
        except Exception:
            logger.exception("Webhook sample %s not remembered (cache down)", sample.pk)
    elif sample_pk is not None:
        WebhookEvent.objects.filter(pk=sample_pk).update(deliveries=count)
    return _refused()


def _text(value: str) -> str:
    """What PostgreSQL text can hold: NUL and lone surrogates (from JSON escapes) become marks."""
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _refused() -> HttpResponse:
    return HttpResponse("not a genuine, well-formed event", status=400, content_type="text/plain")


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
    body = _text(request.body.decode("utf-8", errors="replace"))
    try:
        event = construct_event(request.body, request.headers.get("Stripe-Signature", ""))
    except ValueError as exc:
        return _invalid(request, body, str(exc))
    event_id, event_type = event.get("id"), event.get("type", "")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not (isinstance(event_id, str) and 0 < len(event_id) <= 100 and event_id.isprintable()):
        return _invalid(request, body, "signed event without a usable id")
    if not isinstance(event_type, str) or not isinstance(obj, dict):
        return _invalid(request, body, f"signed event {event_id} without a type or data.object")
    try:
        stored, created = WebhookEvent.objects.get_or_create(
            event_id=event_id,
            defaults={
                "type": _text(event_type[:100]),
                "object_id": _text(str(obj.get("id", ""))[:100]),
                "body": body,
            },
        )
    except IntegrityError:
        stored, created = WebhookEvent.objects.get(event_id=event_id), False
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
