"""The provider webhook endpoints (/stripe/, /razorpay/): verify, store raw once per provider
and event id, answer 200.

Applying an event is a worker's job (tasks.apply_webhook_event, queued on commit; the
sweep tasks.sweep_webhook_events catches what was lost or failed), so the endpoint's speed
does not depend on the ledger's locks and Stripe never times out on us.

Our own verified endpoint and event table rather than dj-stripe's: dj-stripe would
also mirror every object (an extra GET /v1/account and its slow migrations) while
the portal's own tables are the system of record; what we need from it is exactly
the signature check, the raw log and de-duplication, which are a few lines here.
"""

import datetime
import hashlib
import json
import logging
import re
import time

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.payments.models import (
    UNKNOWN_PAYMENT_NOTE,
    Payment,
    WebhookEvent,
    WebhookEventRef,
    WebhookEventStatus,
)
from contracts.auth import client_ip
from core.queue import after_commit_batch, enqueue, enqueue_on_commit

from . import tasks
from .providers import razorpay_provider
from .providers.base import EventKind, PaymentError, ProviderEvent
from .providers.stripe_provider import construct_event, event_from_stripe
from .services import (
    MONEY_RECORDED,
    EventOutOfOrder,
    find_payment,
    payments_for_events,
    provider_event_apply_to_payment,
)

logger = logging.getLogger(__name__)

ACTOR = "stripe webhook"

# How each provider's stored events turn into ProviderEvents, by WebhookEvent.provider.
PARSERS = {
    "stripe": event_from_stripe,
    "razorpay": razorpay_provider.event_from_razorpay,
}


# A stored sample of a refused request keeps this much of its body.
INVALID_SAMPLE_CHARS = 4_000


def _invalid(
    request: HttpRequest, body: str, reason: str, *, provider: str = "stripe"
) -> HttpResponse:
    """Refuse a request that is not a genuine event, keeping a sample, not the flood.

    Per client address and minute the first refusal is stored (its body cut to
    INVALID_SAMPLE_CHARS) and the later ones only counted on that row (`deliveries`);
    past STRIPE_WEBHOOK_INVALID_PER_MINUTE the address gets 429 and nothing is written.
    Stripe (or Razorpay) never fails the check unless the secret is wrong, and retries anyway.
    """
    address = client_ip(request)
    minute = int(time.time() // 60)
    key = f"{provider}-invalid:{hashlib.sha256(address.encode()).hexdigest()[:32]}:{minute}"
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
            provider=provider,
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


# A stored event no worker picked up (its message was lost, the broker was down) is applied
# by the sweep once it is this old; one that failed is retried after RETRY_AFTER, up to
# MAX_ATTEMPTS tries, then it stays failed in the admin for staff.
PICKUP_GRACE = datetime.timedelta(minutes=2)
RETRY_AFTER = datetime.timedelta(minutes=5)
MAX_ATTEMPTS = 12
UNFINISHED = (WebhookEventStatus.RECEIVED, WebhookEventStatus.FAILED)
# The note of an event that can only be applied after another one for its payment (a refund
# success after a refund failure still on its way): replayed once an event has been applied
# to that payment (_retry_unmatched), besides the sweep's retries.
OUT_OF_ORDER_NOTE = "out of order: "
WAITING = Q(note=UNKNOWN_PAYMENT_NOTE) | Q(
    status=WebhookEventStatus.FAILED, note__startswith=OUT_OF_ORDER_NOTE
)
# A quoted value without spaces in an event's body (not a key): the ids an applied event
# may name (pi_..., ch_..., pay_...) and short values with them; what a search of the body
# for '"<id>"' found.
_QUOTED_TOKEN = re.compile(r'"([^"\s\\]{3,255})"(?!\s*:)')


# How many stored events a worker claims and applies in one transaction: one commit, one
# claiming statement and one look for waiting events per batch instead of per event, and
# the batch's follow-ups (PDFs, receipts, outgoing webhooks) published once. Small, because
# a batch holds its customers' rollup and list-version rows to its commit: with 50, two
# workers on the events of 50 customers waited on each other (184 events/s, no faster than
# one); with 20, 366 events/s, and the same as 50 when the events spread over 300 customers
# (docs/benchmarks.md, "Webhook apply").
APPLY_BATCH = 20


def webhook_event_process(*, event_pk: int) -> str:
    """Apply one stored event exactly once; returns its status afterwards.

    Idempotent: an event already processed or ignored is left alone. The row is claimed with
    SELECT ... FOR UPDATE SKIP LOCKED, so a second worker (a redelivery's task, the sweep)
    skips an event that one is applying instead of queueing behind it ("claimed"). A failure
    rolls the apply back and marks the event failed with the reason, for the sweep to retry;
    an event out of order (EventOutOfOrder) is marked failed the same way, and replayed too
    after the next event applied to its payment.
    """
    return _event_process(event_pk, recheck=True)


def _event_process(event_pk: int, *, recheck: bool) -> str:
    for _try in range(3):
        done = _apply_batch(Q(pk=event_pk, status__in=UNFINISHED), limit=1, recheck=recheck)
        if not done:
            status = (
                WebhookEvent.objects.filter(pk=event_pk).values_list("status", flat=True).first()
            )
            return status if status and status not in UNFINISHED else "claimed"
        if done[0] != WebhookEventStatus.RECEIVED:
            return done[0]
        # A deadlock rolled it back: again; after three, it waits for the sweep.
    return WebhookEventStatus.RECEIVED


def _apply_batch(claim: Q, *, limit: int, recheck: bool = True) -> list[str]:
    """Claim up to `limit` stored events matching `claim` (oldest first, SKIP LOCKED: rows
    another worker holds are not waited for), apply each, commit once; returns their new
    statuses.

    Each event is applied in a savepoint of the batch's transaction: one that fails is rolled
    back alone and marked failed (the reason, attempts + 1) in the same commit as the others'
    results, so an event's effects and its status are committed together and it is applied
    once. A lost database aborts the whole batch (nothing committed, all still waiting) and
    raises, for the task's retry. After the commit: events that waited for a payment this
    batch applied to are replayed, and the follow-ups are published, one message per kind.
    """
    statuses: list[str] = []
    applied: list[tuple] = []  # (ProviderEvent, Payment) of the events applied
    unknown: list[tuple] = []  # (pk, ProviderEvent, Payment | None) left "unknown payment"
    waiting: list[WebhookEvent] = []  # left waiting: unknown payment or out of order
    with after_commit_batch(), transaction.atomic():
        claimed = list(
            WebhookEvent.objects.select_for_update(skip_locked=True)
            .filter(claim)
            .order_by("received_at", "id")
            .only("id", "provider", "body")[:limit]
        )
        results: dict[tuple[str, str], list[int]] = {}
        for stored, parsed, payment in _in_lock_order(claimed):
            statuses.append(
                _apply_claimed(stored, parsed, payment, applied, unknown, results, waiting)
            )
        # The applied events' statuses, one UPDATE per outcome (nearly always one): in the
        # batch's transaction, so each commits with its event's effects.
        now = timezone.now()
        for (status, note), pks in results.items():
            WebhookEvent.objects.filter(pk__in=pks).update(
                status=status,
                note=note,
                processed_at=now,
                attempted_at=now,
                attempts=F("attempts") + 1,
            )
        _remember_refs(waiting)
    if applied:
        _retry_unmatched(applied)
    if recheck:
        _recheck_unknown(unknown)
    return statuses


# A deadlock or serialization failure says nothing about the event: it is applied again
# (received, claimed by the next batch), not counted as a failed attempt.
_TRANSIENT_SQLSTATES = {"40P01", "40001", "55P03"}


def _parse(stored: WebhookEvent):
    """The stored event as a ProviderEvent (None: a type we do not handle), or the error."""
    try:
        return PARSERS[stored.provider](json.loads(stored.body))
    except Exception as exc:  # noqa: BLE001 - raised again in the event's savepoint, and recorded
        return exc


def _in_lock_order(claimed: list[WebhookEvent]) -> list[tuple]:
    """The batch's events as (stored, parsed, payment), ordered by the customer and invoice
    their payment belongs to (arrival order among equals).

    Applying an event locks its invoice and payment and, through the invoice rollup
    trigger, the customer's rollup rows, all held to the batch's commit. Two workers'
    batches that take such rows in opposite orders deadlock; taken in one global order they
    only wait for each other. The payments are read with one query for the batch and
    handed to the apply (which locks and reads its own again): `payment` is None where the
    apply must look itself, that is where none was found (an earlier event of the batch
    may make it known) and for a payment's second event in the batch (the first changed it)."""
    parsed = [(stored, _parse(stored)) for stored in claimed]
    among = payments_for_events([e for _s, e in parsed if isinstance(e, ProviderEvent)])
    found = [
        find_payment(event, among=among) if isinstance(event, ProviderEvent) else None
        for _s, event in parsed
    ]

    def order(index: int) -> tuple:
        payment = found[index]
        key = (payment.lock_customer_id, payment.invoice_id) if payment else (0, 0)
        return (*key, index)

    ordered, seen = [], set()
    for index in sorted(range(len(parsed)), key=order):
        payment = found[index]
        first = payment is not None and payment.pk not in seen
        if payment is not None:
            seen.add(payment.pk)
        ordered.append((*parsed[index], payment if first else None))
    return ordered


def _apply_claimed(
    stored: WebhookEvent,
    parsed,
    found: Payment | None,
    applied: list,
    unknown: list,
    results: dict,
    waiting: list,
) -> str:
    """Apply one claimed event in a savepoint of the batch; returns its status. Its new
    status and note go to `results` for the batch to write, or are written at once for a
    detached method (a later attach in the same batch looks for it, see _was_detached)."""
    try:
        with transaction.atomic():
            if isinstance(parsed, Exception):
                raise parsed
            domain_event = parsed
            payment = None
            if domain_event is None:
                result, status = "type not handled", WebhookEventStatus.IGNORED
            elif domain_event.kind == EventKind.METHOD_ATTACHED and _was_detached(
                domain_event.method.id
            ):
                result, status = "method already detached", WebhookEventStatus.IGNORED
            else:
                result, payment = provider_event_apply_to_payment(
                    domain_event, actor=f"{stored.provider} webhook", payment=found
                )
                status = WebhookEventStatus.PROCESSED
            if domain_event is not None and domain_event.kind == EventKind.METHOD_DETACHED:
                now = timezone.now()
                WebhookEvent.objects.filter(pk=stored.pk).update(
                    status=status,
                    note=result,
                    processed_at=now,
                    attempted_at=now,
                    attempts=F("attempts") + 1,
                )
            else:
                results.setdefault((status, result), []).append(stored.pk)
    except EventOutOfOrder as exc:
        # Not a fault: the event it waits for has not arrived (Stripe's order is not ours).
        logger.info("webhook event %s out of order: %s", stored.pk, exc)
        _mark_failed(stored.pk, f"{OUT_OF_ORDER_NOTE}{exc}")
        waiting.append(stored)
        return WebhookEventStatus.FAILED
    except DatabaseError as exc:
        if getattr(exc.__cause__, "sqlstate", None) in _TRANSIENT_SQLSTATES:
            logger.warning("webhook event %s: %s; applied again in the next batch", stored.pk, exc)
            return WebhookEventStatus.RECEIVED
        logger.exception("webhook event %s failed", stored.pk)
        _mark_failed(stored.pk, repr(exc))
        return WebhookEventStatus.FAILED
    except Exception as exc:
        note = exc.message if isinstance(exc, PaymentError) else repr(exc)
        logger.exception("webhook event %s failed", stored.pk)
        _mark_failed(stored.pk, note)
        return WebhookEventStatus.FAILED
    if result == "applied":
        applied.append((domain_event, payment))
    elif result == UNKNOWN_PAYMENT_NOTE:
        unknown.append((stored.pk, domain_event, payment))
        waiting.append(stored)
    return status


def _remember_refs(waiting: list[WebhookEvent]) -> None:
    """The tokens of the events left waiting, for _retry_unmatched to find them by."""
    rows = [
        WebhookEventRef(event_id=stored.pk, ref=token)
        for stored in waiting
        for token in sorted(set(_QUOTED_TOKEN.findall(stored.body)))
    ]
    WebhookEventRef.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)


def _mark_failed(event_pk: int, note: str) -> None:
    WebhookEvent.objects.filter(pk=event_pk).update(
        status=WebhookEventStatus.FAILED,
        note=note[:1000],
        attempts=F("attempts") + 1,
        attempted_at=timezone.now(),
    )


def webhook_events_sweep(*, limit: int = 500) -> int:
    """Apply stored events nobody picked up and retry failed ones; returns how many it tried.

    Idempotent: each event goes through webhook_event_process, which skips what is done or
    claimed. Oldest first, so the order of arrival is kept as far as it matters.
    """
    now = timezone.now()
    due = (
        WebhookEvent.objects.filter(
            Q(status=WebhookEventStatus.RECEIVED, received_at__lt=now - PICKUP_GRACE)
            | Q(
                status=WebhookEventStatus.FAILED,
                attempts__lt=MAX_ATTEMPTS,
                attempted_at__lt=now - RETRY_AFTER,
            )
        )
        .order_by("received_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    tried = 0
    for pk in list(due):
        webhook_event_process(event_pk=pk)
        tried += 1
    return tried


def webhook_events_apply_waiting(*, batch: int = APPLY_BATCH) -> int:
    """Apply stored events that wait for their first apply (received), oldest first, in
    batches until none is left; returns how many this call applied (or ignored, or failed).

    Several workers may run it at once: each batch claims its events with SKIP LOCKED, so
    they share the backlog instead of applying anything twice, and one that finds nothing
    unclaimed stops.
    """
    done = 0
    while True:
        statuses = _apply_batch(Q(status=WebhookEventStatus.RECEIVED), limit=batch)
        if not statuses:
            return done
        done += len(statuses)


def _retry_unmatched(applied: list[tuple]) -> None:
    """Events that named a payment before we knew its provider ids, and events that came
    before the one they wait for (OUT_OF_ORDER_NOTE), get another go now that an event has
    been applied to their payment; one that still does not fit keeps waiting.

    One look for the whole batch. The payment's ids as found before the apply plus the ids
    the event carried cover every id the payment has after it (an apply only fills in or
    sets the event's own ids); a superset at worst replays an event that then keeps waiting.
    """
    refs = set()
    for domain_event, payment in applied:
        if payment is not None:
            refs.update((payment.provider_payment_id, payment.provider_charge_id))
            refs.update((domain_event.provider_payment_id, domain_event.charge_id))
    refs.discard(None)
    refs.discard("")
    if not refs:
        return
    # From the ids to the events (the index on ref, then the few events by key): as one
    # statement the planner could start from the waiting events instead and probe each.
    mentioned = list(
        WebhookEventRef.objects.filter(ref__in=sorted(refs)).values_list("event_id", flat=True)
    )
    if not mentioned:
        return
    # In the order they came: a refund's failure before the dispute that closed after it.
    waiting = (
        WebhookEvent.objects.filter(WAITING, pk__in=sorted(set(mentioned)))
        .order_by("received_at", "pk")
        .values_list("pk", flat=True)
    )
    for pk in list(waiting):
        WebhookEvent.objects.filter(pk=pk).update(status=WebhookEventStatus.RECEIVED)
        webhook_event_process(event_pk=pk)


def _recheck_unknown(unknown: list[tuple]) -> None:
    """An event left "unknown payment" while another worker's batch, not committed yet, was
    making its payment known: that batch's look for waiting events could not see this one.
    Looked at again after this commit, it is replayed if what it waited for has happened
    (once: the replay does not look again)."""
    for pk, domain_event, payment_before in unknown:
        payment = find_payment(domain_event)
        if payment is None:
            continue
        if payment_before is not None and payment.status not in MONEY_RECORDED:
            continue
        if WebhookEvent.objects.filter(pk=pk, note=UNKNOWN_PAYMENT_NOTE).update(
            status=WebhookEventStatus.RECEIVED
        ):
            _event_process(pk, recheck=False)


_UPSERT = """
    INSERT INTO payments_webhookevent
        (provider, event_id, type, object_id, status, body, note, deliveries, received_at,
         attempts)
    VALUES (%s, %s, %s, %s, %s, %s, '', 1, %s, 0)
    ON CONFLICT (provider, event_id) DO UPDATE
        SET deliveries = payments_webhookevent.deliveries + 1
    RETURNING id, status, (xmax = 0)
"""


def _store(
    *, event_id: str, type: str, object_id: str, body: str, provider: str = "stripe"
) -> tuple[int, str, bool]:
    """Store a new event or count a redelivery of the provider's event; returns
    (pk, status, created).

    On PostgreSQL one INSERT ... ON CONFLICT statement, its own transaction: the intake's
    cost is one round trip and one commit (xmax = 0 tells a fresh row from an updated one).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _UPSERT,
                [
                    provider,
                    event_id,
                    type,
                    object_id,
                    WebhookEventStatus.RECEIVED,
                    body,
                    timezone.now(),
                ],
            )
            pk, status, created = cursor.fetchone()
        return pk, status, created
    try:
        stored, created = WebhookEvent.objects.get_or_create(
            provider=provider,
            event_id=event_id,
            defaults={"type": type, "object_id": object_id, "body": body},
        )
    except IntegrityError:
        stored, created = WebhookEvent.objects.get(provider=provider, event_id=event_id), False
    if not created:
        WebhookEvent.objects.filter(pk=stored.pk).update(deliveries=F("deliveries") + 1)
    return stored.pk, stored.status, created


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
    pk, status, created = _store(
        event_id=event_id,
        type=_text(event_type[:100]),
        object_id=_text(str(obj.get("id", ""))[:100]),
        body=body,
    )
    if created or status in UNFINISHED:
        # Applied by a worker, not here: Stripe gets its 200 as soon as the event is stored.
        if settings.STRIPE_WEBHOOK_APPLY_BATCH_SECONDS > 0:
            transaction.on_commit(_wake_appliers)
        else:
            enqueue_on_commit(tasks.apply_webhook_event, pk)
    return HttpResponse("received", content_type="text/plain")


# Which entity of a Razorpay payload names the event's object (WebhookEvent.object_id).
_RAZORPAY_OBJECTS = ("payment_link", "refund", "payment")


@csrf_exempt
@require_POST
def razorpay_webhook(request: HttpRequest) -> HttpResponse:
    """Razorpay's events: the same intake as Stripe's (verify, store once, queue, 200).

    Razorpay names each event in the x-razorpay-event-id header (the body has no id) and
    sends it again under the same id when we do not answer 2xx in time.
    """
    body = _text(request.body.decode("utf-8", errors="replace"))
    signature = request.headers.get("X-Razorpay-Signature", "")
    if not razorpay_provider.verify_signature(request.body, signature):
        reason = "signature missing" if not signature else "signature does not match"
        return _invalid(request, body, reason, provider="razorpay")
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return _invalid(request, body, "signed body is not a Razorpay event", provider="razorpay")
    event_id = request.headers.get("X-Razorpay-Event-Id", "")
    if not (0 < len(event_id) <= 100 and event_id.isprintable()):
        # Razorpay always names its events; a signed body without a name is still
        # de-duplicated, by its content.
        event_id = f"body-{hashlib.sha256(request.body).hexdigest()[:40]}"
    payload = event.get("payload")
    object_id = ""
    for name in _RAZORPAY_OBJECTS:
        wrapper = payload.get(name) if isinstance(payload, dict) else None
        entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
        if isinstance(entity, dict) and entity.get("id"):
            object_id = str(entity["id"])
            break
    pk, status, created = _store(
        provider="razorpay",
        event_id=event_id,
        type=_text(event["event"][:100]),
        object_id=_text(object_id[:100]),
        body=body,
    )
    if created or status in UNFINISHED:
        enqueue_on_commit(tasks.apply_webhook_event, pk)
    return HttpResponse("received", content_type="text/plain")


# When this process last queued apply_waiting_webhook_events (time.monotonic()).
_last_wake = -1e9


def _wake_appliers() -> None:
    """Queue "apply what is waiting" at most once per window, due one window later.

    Why every event is reached: an event committed at time T in this process finds the
    last wake-up queued here at P, with T - window < P <= T (or queues one itself); that
    task does not start before P + window > T, so its query sees the event. A message lost
    to a broker outage leaves the events to the sweep (PICKUP_GRACE), as before. Publishing
    costs a broker round trip, as much as the event's INSERT; this makes it one per window
    per process instead of one per event.
    """
    global _last_wake
    window = settings.STRIPE_WEBHOOK_APPLY_BATCH_SECONDS
    now = time.monotonic()
    if now - _last_wake < window:
        return
    _last_wake = now
    enqueue(tasks.apply_waiting_webhook_events, countdown=window)
