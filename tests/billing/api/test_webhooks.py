"""Outgoing webhooks: events from the services, signed delivery to a real receiver on
127.0.0.1, retries, replay, disabling after three days of failure, private hosts."""

import datetime
import hashlib
import hmac
import json
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.db import transaction
from django.utils import timezone
from jsonschema_rs import Draft202012Validator

from billing.api import webhooks
from billing.api.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)
from billing.api.tasks import send_due_webhooks
from billing.api.views import openapi_document
from billing.collections.notifications import notify_invoice_overdue
from billing.collections.services import contract_mark_past_due_if_overdue
from billing.invoices.credit_notes import credit_note_issue
from billing.invoices.services import bill_contracts
from billing.payments import services as payments
from contracts.models import CancellationReason, Role
from contracts.services import contract_cancel
from core.activity import customer_activity, describe
from core.audit import audit_record
from core.errors import DomainError
from core.models import AuditEntry
from tests.factories import MembershipFactory, make_contract, make_invoice

from .receiver import Receiver, free_port

pytestmark = pytest.mark.django_db

CREATED = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
START = datetime.datetime(2027, 3, 1, 9, 0, tzinfo=datetime.UTC)
ALL_EVENTS = list(WebhookEventType.values)


def verify_reference(header: str, body: bytes, secret: str, *, now: int, tolerance=300) -> bool:
    """The receiver's side, written from the documented scheme alone: split
    `t=<unix>,v1=<hex>`, HMAC-SHA256 over "<t>.<body>" keyed with the secret, compare in
    constant time, refuse an old timestamp."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(now - timestamp) <= tolerance


@pytest.fixture
def receiver():
    r = Receiver(free_port())
    yield r
    r.stop()


@pytest.fixture
def owner(customer):
    return MembershipFactory(customer=customer, role=Role.OWNER)


@pytest.fixture
def endpoint(owner):
    def make(url: str, events=ALL_EVENTS) -> WebhookEndpoint:
        # Made before anything the tests do: an endpoint gets no event from before it existed.
        with time_machine.travel(CREATED, tick=False):
            return webhooks.endpoint_create(
                membership=owner, url=url, events=events, description="ERP", actor=owner.user
            )

    return make


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Run `work` as a committed business transaction: its after-commit steps run too
    (tasks are eager in the tests, so deliveries are attempted at once)."""

    def call(work):
        with django_capture_on_commit_callbacks(execute=True):
            return work()

    return call


def _schema(name: str) -> Draft202012Validator:
    doc = openapi_document()
    return Draft202012Validator(
        {**doc["components"]["schemas"][name], "components": doc["components"]}
    )


def test_a_delivery_is_signed_and_verifies_with_a_reference_implementation(
    customer, endpoint, receiver, run
):
    receiver.start()
    hook = endpoint(receiver.url, events=["invoice.finalized"])
    contract = make_contract(customer)
    with time_machine.travel(START, tick=False):
        invoice = run(lambda: make_invoice(contract))
        now = int(timezone.now().timestamp())
    (request,) = receiver.received
    header = request.headers["Portal-Signature"]
    assert verify_reference(header, request.body, hook.secret, now=now)
    # Any change of the body, or another secret, fails the same check.
    assert not verify_reference(header, request.body + b" ", hook.secret, now=now)
    assert not verify_reference(header, request.body, hook.secret + "x", now=now)
    assert not verify_reference(header, request.body, hook.secret, now=now + 3600)
    assert request.headers["Content-Type"] == "application/json"
    event = json.loads(request.body)
    assert event["object"] == "event"
    assert event["type"] == "invoice.finalized"
    assert event["id"].startswith("evt_") and request.headers["Portal-Event-Id"] == event["id"]
    assert event["created"] == now
    assert event["data"]["object"]["id"] == f"in_{invoice.pk}"
    assert event["data"]["object"]["number"] == invoice.number
    _schema("Invoice").validate(event["data"]["object"])
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.last_response_code == 200
    assert list(delivery.log.values_list("response_code", flat=True)) == [200]


def test_a_receiver_that_is_down_gets_the_event_later_once(customer, endpoint, receiver, run):
    endpoint(receiver.url, events=["invoice.finalized"])  # nothing listens yet: refused
    contract = make_contract(customer)
    with time_machine.travel(START, tick=False):
        run(lambda: make_invoice(contract))
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.last_response_code is None and "Refused" in delivery.last_error
    assert delivery.next_attempt_at == START + datetime.timedelta(minutes=1)

    receiver.answers = [500]
    receiver.start()
    with time_machine.travel(START + datetime.timedelta(seconds=30), tick=False):
        run(send_due_webhooks.delay)  # not due yet
    assert receiver.received == []
    with time_machine.travel(START + datetime.timedelta(minutes=1, seconds=1), tick=False):
        run(send_due_webhooks.delay)
    delivery.refresh_from_db()
    assert [r.status for r in receiver.received] == [500]
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_response_code == 500
    assert delivery.last_response_body == "receiver is unwell"
    assert delivery.next_attempt_at == START + datetime.timedelta(minutes=6, seconds=1)

    with time_machine.travel(START + datetime.timedelta(minutes=7), tick=False):
        run(send_due_webhooks.delay)
    for days in (1, 2, 4):  # later sweeps send nothing more
        with time_machine.travel(START + datetime.timedelta(days=days), tick=False):
            run(send_due_webhooks.delay)
    assert len(receiver.accepted) == 1
    assert [r.status for r in receiver.received] == [500, 200]
    ids = {json.loads(r.body)["id"] for r in receiver.received}
    assert ids == {delivery.event_id}
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 3
    codes = list(WebhookAttempt.objects.order_by("at").values_list("response_code", flat=True))
    assert codes == [None, 500, 200]
    assert WebhookEndpoint.objects.get().failing_since is None


def test_replay_from_the_page_sends_the_same_event_again(
    client, customer, owner, endpoint, receiver, run
):
    receiver.start()
    hook = endpoint(receiver.url, events=["invoice.finalized"])
    contract = make_contract(customer)
    run(lambda: make_invoice(contract))
    delivery = WebhookDelivery.objects.get()
    client.force_login(owner.user)
    response = run(
        lambda: client.post(f"/settings/webhooks/{hook.pk}/deliveries/{delivery.pk}/replay/")
    )
    assert response.status_code == 302
    first, again = receiver.received
    assert json.loads(again.body)["id"] == json.loads(first.body)["id"] == delivery.event_id
    assert again.body == first.body  # same event, so receivers de-duplicate by its id
    now = int(timezone.now().timestamp())
    assert verify_reference(again.headers["Portal-Signature"], again.body, hook.secret, now=now)
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert list(delivery.log.order_by("at", "id").values_list("replay", flat=True)) == [
        False,
        True,
    ]
    assert AuditEntry.objects.filter(action="webhook_delivery.replayed").count() == 1
    page = client.get(f"/settings/webhooks/{hook.pk}/").content.decode()
    assert delivery.event_id in page and "(replay)" in page


def test_an_endpoint_failing_for_three_days_is_disabled_and_the_customer_told_once(
    customer, endpoint, receiver, run
):
    hook = endpoint(receiver.url, events=["invoice.finalized"])  # never listens
    with time_machine.travel(START, tick=False):
        run(lambda: make_invoice(make_contract(customer)))
    delivery = WebhookDelivery.objects.get()
    for _ in range(40):  # bounded: the schedule has about a dozen attempts in 3 days
        delivery.refresh_from_db()
        if delivery.status != DeliveryStatus.PENDING:
            break
        with time_machine.travel(delivery.next_attempt_at, tick=False):
            run(send_due_webhooks.delay)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_attempt_at == START + datetime.timedelta(days=3)
    delays = [
        b - a
        for a, b in zip(
            *(lambda ts: (ts, ts[1:]))(
                list(delivery.log.order_by("at").values_list("at", flat=True))
            ),
            strict=False,
        )
    ]
    assert delays[:4] == [datetime.timedelta(minutes=m) for m in (1, 5, 30, 60)]
    hook.refresh_from_db()
    assert not hook.enabled and "3 days" in hook.disabled_reason
    (message,) = mail.outbox
    assert message.to == [customer.email]
    assert "disabled" in message.subject and hook.url in message.body
    texts = [a.text for a in describe(customer_activity(customer.pk))]
    assert (
        f"Webhook endpoint {hook.url} disabled: no event could be delivered to it for 3 days"
        in (texts)
    )

    # More events, more sweeps: nothing is sent to it and nobody is told again.
    with time_machine.travel(START + datetime.timedelta(days=4), tick=False):
        run(lambda: make_invoice(make_contract(customer)))
        run(send_due_webhooks.delay)
        run(lambda: webhooks.endpoint_send_disabled_notice(endpoint_id=hook.pk))
    assert WebhookDelivery.objects.count() == 1
    assert len(mail.outbox) == 1


def test_no_event_for_a_rolled_back_change(customer, endpoint, receiver, run):
    receiver.start()
    endpoint(receiver.url)
    contract = make_contract(customer)

    def finalize_then_fail():
        with transaction.atomic():
            make_invoice(contract)
            raise RuntimeError("the business transaction fails after the audit entry")

    with pytest.raises(RuntimeError):
        run(finalize_then_fail)
    assert not AuditEntry.objects.filter(action="invoice.open").exists()
    assert WebhookDelivery.objects.count() == 0
    assert webhooks.events_catch_up() == 0
    assert receiver.received == []


def test_each_event_type_comes_from_its_service(customer, endpoint, receiver, run, settings):
    receiver.start()
    endpoint(receiver.url)
    contract = make_contract(customer)
    invoice = run(lambda: make_invoice(contract))  # invoice.finalized
    failed = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind="api", actor="t"
    )
    run(
        lambda: payments.payment_record_failure(
            payment_id=failed.pk, actor="t", code="card_declined", message="Declined."
        )
    )
    overdue_day = invoice.due_date + datetime.timedelta(days=1)
    with time_machine.travel(overdue_day, tick=False):
        run(lambda: notify_invoice_overdue(invoice_id=invoice.pk))
        run(lambda: contract_mark_past_due_if_overdue(contract_id=contract.pk, today=overdue_day))
    paid = payments.payment_create(invoice_id=invoice.pk, provider="sandbox", kind="api", actor="t")
    run(lambda: payments.payment_record_success(payment_id=paid.pk, actor="t"))
    note = run(
        lambda: credit_note_issue(
            invoice_id=invoice.pk,
            amount=Decimal("1.00"),
            reason="goodwill",
            settle="credit",
            actor="t",
        )
    )
    run(
        lambda: contract_cancel(
            contract_id=contract.pk, reason=CancellationReason.CUSTOMER_REQUEST, actor="t"
        )
    )
    events = [json.loads(r.body) for r in receiver.received]
    assert sorted(e["type"] for e in events) == sorted(ALL_EVENTS)
    objects = {e["type"]: e["data"]["object"] for e in events}
    for name in ("invoice.finalized", "invoice.payment_failed", "invoice.overdue", "invoice.paid"):
        assert objects[name]["id"] == f"in_{invoice.pk}"
        _schema("Invoice").validate(objects[name])
    assert objects["invoice.paid"]["status"] == "paid"
    assert objects["invoice.finalized"]["status"] == "open"
    assert objects["credit_note.created"]["id"] == f"cn_{note.pk}"
    _schema("CreditNote").validate(objects["credit_note.created"])
    for name in ("contract.cancellation_scheduled", "contract.cancelled"):
        assert objects[name]["id"] == f"sub_{contract.pk}"
        _schema("Subscription").validate(objects[name])
    assert objects["contract.cancellation_scheduled"]["status"] == "past_due"
    assert objects["contract.cancelled"]["status"] == "canceled"
    # Idempotent per (endpoint, fact, type): running the hook or the sweep again adds nothing.
    assert webhooks.events_catch_up() == 0
    for entry in AuditEntry.objects.filter(action__in=list(webhooks.EVENT_FOR_ACTION)):
        assert webhooks.events_record_for_entry(entry.pk) == []
    assert WebhookDelivery.objects.count() == len(ALL_EVENTS)


def test_only_chosen_events_of_enabled_endpoints_of_the_customer(
    customer, other_customer, endpoint, receiver, run
):
    receiver.start()
    endpoint(receiver.url, events=["invoice.paid"])
    run(lambda: make_invoice(make_contract(customer)))  # finalized: not chosen
    run(lambda: make_invoice(make_contract(other_customer)))  # another customer's
    assert WebhookDelivery.objects.count() == 0 and receiver.received == []


def test_lost_after_commit_step_is_caught_up_from_the_audit_log(customer, endpoint, receiver, run):
    receiver.start()
    endpoint(receiver.url, events=["invoice.finalized"])
    make_invoice(make_contract(customer))  # its on_commit never runs (a crash, say)
    assert WebhookDelivery.objects.count() == 0
    assert run(webhooks.events_catch_up) == 1
    run(send_due_webhooks.delay)
    assert len(receiver.accepted) == 1
    assert run(webhooks.events_catch_up) == 0


def test_a_billing_run_chunk_sends_its_finalized_events_without_the_catch_up(
    customer, endpoint, receiver, run
):
    """Chunk entries are written by COPY (no post_save); the chunk's invoices_issued
    message records their events, so nothing waits for the catch-up sweep."""
    receiver.start()
    endpoint(receiver.url, events=["invoice.finalized"])
    start = datetime.date(2026, 1, 20)
    contracts = [make_contract(customer, started_on=start, anchor=1) for _ in range(2)]
    issued = run(
        lambda: bill_contracts(
            contract_ids=[c.pk for c in contracts], today=datetime.date(2026, 1, 21)
        )
    )
    assert len(issued.invoice_ids) == 2 and not issued.errors
    run(send_due_webhooks.delay)
    assert sorted(json.loads(r.body)["type"] for r in receiver.accepted) == [
        "invoice.finalized",
        "invoice.finalized",
    ]
    assert run(webhooks.events_catch_up) == 0


def test_private_and_loopback_hosts_are_refused_unless_allowed(settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    for url in (
        "http://127.0.0.1:8000/hooks",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",
        "ftp://example.com/",
        "https://user:secret@example.com/",
        "javascript:alert(1)",
        "",
    ):
        with pytest.raises(DomainError):
            webhooks.url_clean(url)
    assert webhooks.url_clean(" https://erp.example.com/hooks ") == "https://erp.example.com/hooks"
    # A name that resolves to loopback is refused when sending, before any connection.
    receiver.start()
    answer = webhooks.post_signed(
        f"http://localhost:{receiver.port}/", body=b"{}", secret="whsec_x", event_id="evt_1"
    )
    assert answer.code is None and "private or loopback" in answer.error
    assert receiver.received == []
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    assert webhooks.url_clean("http://127.0.0.1:8000/hooks")
    answer = webhooks.post_signed(
        f"http://localhost:{receiver.port}/", body=b"{}", secret="whsec_x", event_id="evt_1"
    )
    assert answer.ok and len(receiver.received) == 1


def test_a_customer_without_endpoints_costs_one_query_after_commit(
    customer, django_capture_on_commit_callbacks, django_assert_num_queries
):
    invoice = make_invoice(make_contract(customer))
    with django_capture_on_commit_callbacks() as callbacks:
        audit_record(actor="t", action="invoice.paid", target=invoice, customer=customer)
    (callback,) = callbacks  # and nothing queried inside the business transaction
    with django_assert_num_queries(1):
        callback()
    assert not WebhookDelivery.objects.exists()
