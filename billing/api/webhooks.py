"""Outgoing webhooks: customers' endpoints, the events they receive, and their delivery.

Where events come from: the audit log. Every business fact an event reports is already
written by its service as an audit entry inside the service's transaction
(`invoice.open`, `invoice.paid`, `payment.failed`, `notification.invoice_overdue`,
`credit_note.issued`, `contract.past_due`, `contract.cancelled`). A post_save hook on
AuditEntry (billing.api.apps) queues `events_record_for_entry` with on_commit, so a
rolled-back change sends nothing and the lower apps name no webhook. If the process dies
between the commit and that callback, `events_catch_up` (beat, every few minutes) finds the
entry in the audit log and records the event then: the audit log is the outbox. One entry
gives one delivery per endpoint (a unique constraint), whichever path came first, and
the event id is derived from the entry, so both paths name the event alike.

Delivery: `delivery_attempt` posts the event signed the way Stripe signs its own
(`Portal-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`); a 2xx ends it,
anything else is retried on RETRY_SCHEDULE for WEBHOOK_RETRY_DAYS. The schedule lives in
the database (`next_attempt_at`), not in Celery countdowns, which may not outlive the
broker's visibility timeout: the minutely sweep sends what is due. An endpoint that has
failed for WEBHOOK_RETRY_DAYS without one delivered event is disabled and the customer's
billing contacts are told once.
"""

import datetime
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from billing.invoices.models import CreditNote, Invoice
from billing.payments.models import Payment
from contracts.models import PAYING_ROLES, Customer, LeaseContract, Membership
from core import l10n
from core.audit import Actor, audit_record
from core.errors import DomainError
from core.models import AuditEntry
from core.queue import enqueue, on_commit_collected

from .models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)
from .serializers import credit_note_object, invoice_object, subscription_object, unix

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Portal-Signature"
MAX_ENDPOINTS = 16
# Delays after the 1st, 2nd, ... failed attempt (Stripe-like exponential back-off); the
# last one repeats until the event is WEBHOOK_RETRY_DAYS old, when one final attempt is
# made at that moment.
RETRY_SCHEDULE = tuple(datetime.timedelta(minutes=m) for m in (1, 5, 30, 60, 120, 240, 480, 720))
# How long a claimed attempt keeps others off it: above the request timeout, so a worker
# that died mid-request leaves the delivery to the sweep after this.
IN_FLIGHT = datetime.timedelta(minutes=2)
BODY_EXCERPT = 500
USER_AGENT = "IPv4-Portal-Webhooks/1.0"

T = WebhookEventType
# The audit action that records each event's fact.
EVENT_FOR_ACTION = {
    "invoice.open": T.INVOICE_FINALIZED,  # Draft -> Open is the only way to Open
    "invoice.paid": T.INVOICE_PAID,
    "payment.failed": T.INVOICE_PAYMENT_FAILED,
    "notification.invoice_overdue": T.INVOICE_OVERDUE,  # claimed once per invoice
    "credit_note.issued": T.CREDIT_NOTE_CREATED,
    "contract.past_due": T.CONTRACT_CANCELLATION_SCHEDULED,
    "contract.cancelled": T.CONTRACT_CANCELLED,
}


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex>`: HMAC-SHA256 keyed with the whole secret over `<t>.<body>`."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_body(payload: dict) -> bytes:
    """The exact bytes sent (and signed): compact JSON with sorted keys (PostgreSQL's jsonb
    keeps no key order), the same on every attempt and replay."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


# --- Where an endpoint may point ---------------------------------------------------------


def _address_allowed(address: str) -> bool:
    if settings.WEBHOOK_ALLOW_PRIVATE_HOSTS:
        return True
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def url_clean(url: str) -> str:
    """An http(s) URL with a host; a private or loopback literal address is refused unless
    WEBHOOK_ALLOW_PRIVATE_HOSTS. Names are resolved and checked again on every attempt."""
    url = (url or "").strip()
    if not url:
        raise DomainError(_("Enter the URL that receives the events."), code="url")
    if len(url) > 2000 or any(c.isspace() or ord(c) < 32 for c in url):
        raise DomainError(_("Enter a valid URL."), code="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DomainError(_("Enter a valid URL."), code="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DomainError(_("The URL must start with https:// (or http://)."), code="url")
    if parts.username or parts.password:
        raise DomainError(_("Put no user name or password in the URL."), code="url")
    if port == 0:
        raise DomainError(_("Enter a valid URL."), code="url")
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    private_name = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    if (literal is not None and not _address_allowed(str(literal))) or (
        private_name and not settings.WEBHOOK_ALLOW_PRIVATE_HOSTS
    ):
        raise DomainError(
            _("Private, local and loopback addresses cannot receive webhooks."), code="url"
        )
    return url


def _resolve(host: str, port: int) -> str:
    """The address to connect to; refused when any of the host's addresses is private."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _SendError(f"Could not resolve {host}: {exc}") from None
    addresses = [info[4][0] for info in infos]
    # All of them: a name that also resolves inside our network is refused whichever
    # address the resolver lists first.
    if not addresses or not all(_address_allowed(a) for a in addresses):
        raise _SendError(f"{host} resolves to a private or loopback address; refused.")
    return addresses[0]


class _SendError(Exception):
    pass


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, so a second DNS answer cannot swap in
    a private one (rebinding) between the check and the request."""

    def __init__(self, host: str, port: int | None, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@dataclass
class Answer:
    code: int | None
    body: str
    error: str

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


def post_signed(url: str, *, body: bytes, secret: str, event_id: str) -> Answer:
    """One POST, no redirects followed (a 3xx is a failure, as at Stripe)."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(secret, body, timestamp),
        "Portal-Event-Id": event_id,
    }
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    try:
        address = _resolve(parts.hostname or "", port)
        connection_class = _PinnedHTTPS if https else _PinnedHTTP
        connection = connection_class(parts.hostname, port, address=address, timeout=timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            excerpt = response.read(BODY_EXCERPT).decode("utf-8", "replace")
            return Answer(response.status, excerpt, "")
        finally:
            connection.close()
    except _SendError as exc:
        return Answer(None, "", str(exc)[:300])
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, "", (f"{type(exc).__name__}: {exc}")[:300])


# --- Events from the audit log -----------------------------------------------------------


def event_id_for(entry_id: int, event_type: str) -> str:
    """The same id from the hook and from the catch-up sweep; not guessable from ids."""
    return "evt_" + salted_hmac("webhook-event", f"{entry_id}:{event_type}").hexdigest()[:24]


def _object_api_id(entry: AuditEntry, event_type: str) -> str | None:
    if event_type == T.INVOICE_PAYMENT_FAILED:
        invoice_id = (
            Payment.objects.filter(pk=entry.object_id).values_list("invoice_id", flat=True).first()
        )
        return f"in_{invoice_id}" if invoice_id else None
    prefix = {T.CREDIT_NOTE_CREATED: "cn_"}.get(event_type)
    if prefix is None:
        prefix = "sub_" if event_type.startswith("contract.") else "in_"
    return f"{prefix}{entry.object_id}"


def events_record_for_entry(entry_id: int, *, customer_id: int | None = None) -> list[int]:
    """The deliveries of the audit entry's event to the customer's enabled endpoints that
    chose it (after the entry committed). Idempotent; returns the new deliveries' ids.

    With `customer_id` known (the hook), a customer without endpoints costs one query."""
    candidates = None
    if customer_id is not None:
        candidates = list(WebhookEndpoint.objects.filter(customer_id=customer_id, enabled=True))
        if not candidates:
            return []
    entry = AuditEntry.objects.filter(pk=entry_id).first()
    if entry is None or entry.customer_id is None:
        return []
    event_type = EVENT_FOR_ACTION.get(entry.action)
    if event_type is None:
        return []
    if candidates is None:
        candidates = WebhookEndpoint.objects.filter(customer_id=entry.customer_id, enabled=True)
    endpoints = [
        e
        for e in candidates
        # No event from before the endpoint existed (the catch-up sweep looks back).
        if e.customer_id == entry.customer_id
        and event_type in e.events
        and e.created_at <= entry.created_at
    ]
    if not endpoints:
        return []
    object_api_id = _object_api_id(entry, event_type)
    if object_api_id is None:
        return []
    event_id = event_id_for(entry.pk, event_type)
    retry_until = entry.created_at + datetime.timedelta(days=settings.WEBHOOK_RETRY_DAYS)
    created = []
    for endpoint in endpoints:
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    endpoint=endpoint,
                    event_id=event_id,
                    type=event_type,
                    audit_entry_id=entry.pk,
                    object_api_id=object_api_id,
                    next_attempt_at=timezone.now(),
                    retry_until=max(retry_until, timezone.now()),
                )
        except IntegrityError:  # recorded already (the hook and the sweep both ran)
            continue
        created.append(delivery.pk)
    if created:
        payload = event_payload(
            event_id=event_id,
            event_type=event_type,
            object_api_id=object_api_id,
            created=entry.created_at,
        )
        WebhookDelivery.objects.filter(pk__in=created, payload=None).update(payload=payload)
    return created


def on_audit_entry_saved(sender, instance: AuditEntry, created: bool, **kwargs) -> None:
    """post_save of AuditEntry: after the business transaction commits, record its event."""
    if not created or kwargs.get("raw") or instance.action not in EVENT_FOR_ACTION:
        return
    if instance.customer_id is None:
        return
    # A batch of transactions (a webhook batch) records all its entries' events at its end,
    # with one look for endpoints instead of one per entry.
    on_commit_collected(
        "api.webhooks", (instance.pk, instance.customer_id), _record_and_send_entries
    )


def on_invoices_issued(sender, invoice_ids: list[int], **kwargs) -> None:
    """A billing-run chunk writes its audit entries in bulk (COPY), which sends no
    post_save: the chunk's one message (signals.invoices_issued) records their events
    here, in the worker after the chunk committed, instead of at the next catch-up."""
    entries = list(
        AuditEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Invoice),
            object_id__in=[str(pk) for pk in invoice_ids],
            action__in=list(EVENT_FOR_ACTION),
            customer_id__isnull=False,
        ).values_list("pk", "customer_id")
    )
    if entries:
        _record_and_send_entries(entries)


def _record_and_send_entries(entries: list[tuple[int, int]]) -> None:
    """Record and send the events of committed audit entries ((entry id, customer id));
    customers without an enabled endpoint cost one query for all of them."""
    try:
        with_endpoints = set(
            WebhookEndpoint.objects.filter(
                customer_id__in={customer_id for _entry, customer_id in entries}, enabled=True
            ).values_list("customer_id", flat=True)
        )
    except Exception:
        # The business change has committed; its events are recorded by the catch-up sweep.
        logger.exception("webhooks: could not look for the endpoints of %d entries", len(entries))
        return
    for entry_id, customer_id in entries:
        if customer_id in with_endpoints:
            _record_and_send(entry_id, customer_id)


def _record_and_send(entry_id: int, customer_id: int) -> None:
    from .tasks import deliver_webhook

    try:
        delivery_ids = events_record_for_entry(entry_id, customer_id=customer_id)
    except Exception:
        # The business change has committed; its event is recorded by the catch-up sweep.
        logger.exception("webhooks: could not record the event of audit entry %s", entry_id)
        return
    for delivery_id in delivery_ids:
        enqueue(deliver_webhook, delivery_id)


def events_catch_up(*, since: datetime.timedelta = datetime.timedelta(hours=6)) -> int:
    """Record the events whose after-commit step never ran (a crash right after commit)."""
    customers = set(
        WebhookEndpoint.objects.filter(enabled=True).values_list("customer_id", flat=True)
    )
    if not customers:
        return 0
    entries = AuditEntry.objects.filter(
        customer_id__in=customers,
        action__in=list(EVENT_FOR_ACTION),
        created_at__gte=timezone.now() - since,
    ).values_list("pk", flat=True)
    return sum(len(events_record_for_entry(pk)) for pk in entries)


def event_payload(
    *, event_id: str, event_type: str, object_api_id: str, created: datetime.datetime
) -> dict:
    """Stripe's event object around the API's own representation of the object."""
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": unix(created),
        "data": {"object": api_object(object_api_id)},
    }


def api_object(object_api_id: str) -> dict:
    """The object as GET /api/... shows it (contracts as the invoices' `subscription`)."""
    kind, _sep, pk = object_api_id.partition("_")
    if kind == "in":
        invoice = Invoice.objects.select_related("customer").get(pk=pk)
        return invoice_object(invoice, expand=set(), delinquent=False)
    if kind == "cn":
        note = (
            CreditNote.objects.select_related("invoice")
            .prefetch_related("lines", "tax_lines", "refunds")
            .get(pk=pk)
        )
        return credit_note_object(note)
    contract = LeaseContract.objects.prefetch_related("blocks").get(pk=pk)
    return subscription_object(contract, customer=f"cus_{contract.customer_id}")


# --- Endpoints: what owners and billing members manage --------------------------------------


def _paying(membership: Membership) -> None:
    if not membership.can_pay:
        raise DomainError(_("Only owners and billing members manage webhooks."), code="role")


def _events_clean(events: list[str]) -> list[str]:
    chosen = sorted(set(events or []))
    if not chosen or set(chosen) - set(WebhookEventType.values):
        raise DomainError(_("Choose at least one event."), code="events")
    return chosen


def endpoint_create(
    *, membership: Membership, url: str, events: list[str], description: str, actor: Actor
) -> WebhookEndpoint:
    """A new enabled endpoint with its own secret (shown on the page after creation)."""
    _paying(membership)
    url = url_clean(url)
    events = _events_clean(events)
    with transaction.atomic():
        # The customer row serialises two creations racing for the last place.
        Customer.objects.select_for_update().get(pk=membership.customer_id)
        if WebhookEndpoint.objects.filter(customer_id=membership.customer_id).count() >= (
            MAX_ENDPOINTS
        ):
            raise DomainError(
                _("You have %(count)s endpoints, the most there can be; delete one first.")
                % {"count": MAX_ENDPOINTS},
                code="too_many",
            )
        endpoint = WebhookEndpoint.objects.create(
            customer_id=membership.customer_id,
            url=url,
            description=(description or "").strip()[:200],
            events=events,
            secret=new_secret(),
            created_by=actor if isinstance(actor, AbstractBaseUser) else None,
        )
        audit_record(
            actor=actor,
            action="webhook_endpoint.created",
            target=endpoint,
            customer=membership.customer,
            after={"url": url, "events": events},
        )
    return endpoint


def _lock_endpoint(endpoint_id: int, customer_id: int) -> WebhookEndpoint:
    """The customer's endpoint, locked; another customer's is DoesNotExist (a 404)."""
    return WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id, customer_id=customer_id)


def endpoint_set_enabled(
    *, endpoint_id: int, membership: Membership, enabled: bool, actor: Actor
) -> WebhookEndpoint:
    """Enable or disable by hand. Quiet when it already is. Enabling starts afresh: the
    failure clock is reset and a later automatic disabling tells the customer again."""
    _paying(membership)
    with transaction.atomic():
        endpoint = _lock_endpoint(endpoint_id, membership.customer_id)
        if endpoint.enabled == enabled:
            return endpoint
        endpoint.enabled = enabled
        if enabled:
            endpoint.disabled_reason = ""
            endpoint.disabled_at = None
            endpoint.failing_since = None
            endpoint.disabled_notice_sent_at = None
        else:
            endpoint.disabled_reason = _("Disabled by %(who)s.") % {"who": _who(actor)}
            endpoint.disabled_at = timezone.now()
        endpoint.save()
        audit_record(
            actor=actor,
            action="webhook_endpoint.enabled" if enabled else "webhook_endpoint.disabled",
            target=endpoint,
            customer=membership.customer,
            after={"enabled": enabled},
        )
    return endpoint


def _who(actor: Actor) -> str:
    return actor.get_username() if isinstance(actor, AbstractBaseUser) else str(actor)


def endpoint_delete(*, endpoint_id: int, membership: Membership, actor: Actor) -> None:
    """Delete the endpoint and its delivery log (they are not money records)."""
    _paying(membership)
    with transaction.atomic():
        endpoint = _lock_endpoint(endpoint_id, membership.customer_id)
        audit_record(
            actor=actor,
            action="webhook_endpoint.deleted",
            target=endpoint,
            customer=membership.customer,
            before={"url": endpoint.url, "events": endpoint.events},
        )
        endpoint.delete()


def endpoint_reveal_secret(*, endpoint_id: int, membership: Membership, actor: Actor) -> str:
    """The signing secret, for an owner or billing member; each look is audited."""
    _paying(membership)
    with transaction.atomic():
        endpoint = _lock_endpoint(endpoint_id, membership.customer_id)
        audit_record(
            actor=actor,
            action="webhook_endpoint.secret_revealed",
            target=endpoint,
            customer=membership.customer,
        )
    return endpoint.secret


def delivery_replay(
    *, endpoint_id: int, delivery_id: int, membership: Membership, actor: Actor
) -> WebhookDelivery:
    """Send the event again now (same event id and body, so receivers de-duplicate).

    A replay is one more attempt; the delivery's own schedule is not changed by it."""
    _paying(membership)
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .select_related("endpoint")
            .get(
                pk=delivery_id,
                endpoint_id=endpoint_id,
                endpoint__customer_id=membership.customer_id,
            )
        )
        if not delivery.endpoint.enabled:
            raise DomainError(_("Enable the endpoint before replaying its events."), code="off")
        audit_record(
            actor=actor,
            action="webhook_delivery.replayed",
            target=delivery.endpoint,
            customer=membership.customer,
            after={"event": delivery.event_id, "type": delivery.type},
        )
        from .tasks import deliver_webhook  # tasks imports this module

        transaction.on_commit(lambda: enqueue(deliver_webhook, delivery_id, True))
    return delivery


# --- Sending ---------------------------------------------------------------------------


def next_delay(attempts: int) -> datetime.timedelta:
    """The wait after the `attempts`-th failed attempt."""
    return RETRY_SCHEDULE[min(attempts, len(RETRY_SCHEDULE)) - 1]


def _claim(delivery_id: int, *, replay: bool, now: datetime.datetime) -> WebhookDelivery | None:
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or not delivery.endpoint.enabled:
            return None
        if not replay:
            due = delivery.next_attempt_at is not None and delivery.next_attempt_at <= now
            if delivery.status != DeliveryStatus.PENDING or not due:
                return None
            delivery.next_attempt_at = now + IN_FLIGHT
        if delivery.payload is None:
            delivery.payload = event_payload(
                event_id=delivery.event_id,
                event_type=delivery.type,
                object_api_id=delivery.object_api_id,
                created=delivery.created_at,
            )
        delivery.save(update_fields=["next_attempt_at", "payload"])
    return delivery


def delivery_attempt(*, delivery_id: int, replay: bool = False) -> bool | None:
    """Send the delivery if it is due (or as a replay). True when the receiver took it,
    False when it did not, None when there was nothing to send."""
    now = timezone.now()
    delivery = _claim(delivery_id, replay=replay, now=now)
    if delivery is None:
        return None
    endpoint = delivery.endpoint
    # No lock is held during the request: the claim (next_attempt_at) keeps others off.
    answer = post_signed(
        endpoint.url,
        body=event_body(delivery.payload),
        secret=endpoint.secret,
        event_id=delivery.event_id,
    )
    _record(delivery_id, answer, replay=replay)
    return answer.ok


def _record(delivery_id: int, answer: Answer, *, replay: bool) -> None:
    now = timezone.now()
    disabled = False
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:  # the endpoint was deleted while the request was out
            return
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        WebhookAttempt.objects.create(
            delivery=delivery,
            at=now,
            response_code=answer.code,
            error=answer.error,
            replay=replay,
        )
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_response_code = answer.code
        delivery.last_response_body = answer.body[:BODY_EXCERPT]
        delivery.last_error = answer.error
        if answer.ok:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.next_attempt_at = None
            if endpoint.failing_since is not None:
                endpoint.failing_since = None
                endpoint.save(update_fields=["failing_since"])
        else:
            if delivery.status == DeliveryStatus.PENDING and not replay:
                if now >= delivery.retry_until:
                    delivery.status = DeliveryStatus.FAILED
                    delivery.next_attempt_at = None
                else:
                    delivery.next_attempt_at = min(
                        now + next_delay(delivery.attempts), delivery.retry_until
                    )
            if endpoint.failing_since is None:
                endpoint.failing_since = now
                endpoint.save(update_fields=["failing_since"])
            limit = datetime.timedelta(days=settings.WEBHOOK_RETRY_DAYS)
            if endpoint.enabled and now - endpoint.failing_since >= limit:
                disabled = _disable_failing(endpoint, now=now)
        delivery.save()
        if disabled:
            from .tasks import notify_webhook_disabled

            endpoint_id = endpoint.pk
            transaction.on_commit(lambda: enqueue(notify_webhook_disabled, endpoint_id))
    logger.info(
        "webhook %s to endpoint %s: %s",
        delivery.event_id,
        delivery.endpoint_id,
        answer.code or answer.error,
    )


def _disable_failing(endpoint: WebhookEndpoint, *, now: datetime.datetime) -> bool:
    """Caller holds the endpoint's lock."""
    endpoint.enabled = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = _(
        "Disabled automatically: no event was delivered for %(days)s days."
    ) % {"days": settings.WEBHOOK_RETRY_DAYS}
    endpoint.save(update_fields=["enabled", "disabled_at", "disabled_reason"])
    audit_record(
        actor="webhooks",
        action="webhook_endpoint.disabled_failing",
        target=endpoint,
        customer=endpoint.customer,
        after={"enabled": False, "failing_since": endpoint.failing_since},
    )
    # Its pending deliveries stop here: the sweep skips disabled endpoints, and a replay
    # after enabling sends what the customer still wants.
    return True


def deliveries_due(*, limit: int = 500) -> list[int]:
    return list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=timezone.now(),
            endpoint__enabled=True,
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def endpoint_send_disabled_notice(*, endpoint_id: int) -> bool:
    """E-mail the customer's billing contacts that the endpoint was disabled, once.

    The claim (disabled_notice_sent_at) and the send share a transaction: a mail server that
    refuses rolls the claim back and the task's retry sends it."""
    with transaction.atomic():
        endpoint = (
            WebhookEndpoint.objects.select_for_update(of=("self",))
            .select_related("customer")
            .filter(pk=endpoint_id)
            .first()
        )
        if endpoint is None or endpoint.enabled or endpoint.disabled_notice_sent_at is not None:
            return False
        customer = endpoint.customer
        recipients = customer.billing_recipients or list(
            customer.memberships.filter(role__in=PAYING_ROLES).values_list("user__email", flat=True)
        )
        endpoint.disabled_notice_sent_at = timezone.now()
        endpoint.save(update_fields=["disabled_notice_sent_at"])
        with translation.override(l10n.portal_language(customer.document_language)):
            context = {
                "customer": customer,
                "endpoint": endpoint,
                "days": settings.WEBHOOK_RETRY_DAYS,
                "page_url": settings.SITE_URL + reverse("api:webhooks"),
            }
            subject = _("Your webhook endpoint was disabled")
            body = render_to_string("billing/api/email/webhook_disabled.txt", context)
        if recipients:
            EmailMessage(subject=subject, body=body, to=recipients).send()
    return True
