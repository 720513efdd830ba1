"""Refunds the processor could not make, refunds confirmed before our call returns, and
the Pay online sessions of a voided invoice (issue 12)."""

import datetime
import json
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import responses
import time_machine
from django.core import mail
from django.utils import timezone

from billing.collections import tasks
from billing.invoices import services as invoice_services
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import PaymentKind, PaymentStatus, Refund, RefundStatus
from core.models import AuditEntry
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import (
    WEBHOOK_SECRET,
    deliver_twice_shuffled,
    event,
    load,
    post_event,
)

pytestmark = pytest.mark.django_db

API = "https://api.stripe.com"


@pytest.fixture
def stripe_settings(settings):
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_" + "a" * 24
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_API_BASE = API
    return settings


@pytest.fixture
def sandbox_settings(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True
    return settings


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def paid(stripe_settings, customer):
    """A Stripe payment that paid its invoice in full."""
    invoice = make_invoice(customer=customer, price="123.45")
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    return payments.payment_record_success(
        payment_id=payment.pk,
        actor="t",
        provider_payment_id=f"pi_test_{payment.pk}",
        provider_charge_id=f"ch_test_{payment.pk}",
    )


def _refund(payment, rid, *, status, amount=None, failure_reason=None, ours=True):
    """A Stripe refund object; `ours`: made by the portal (its metadata names the payment)."""
    obj = load(
        "refund",
        id=rid,
        amount=to_minor_units(payment.amount) if amount is None else amount,
        charge=payment.provider_charge_id,
        payment_intent=payment.provider_payment_id,
        currency=payment.currency.lower(),
        status=status,
        metadata=(
            {"payment_id": str(payment.pk), "invoice_id": str(payment.invoice_id)} if ours else {}
        ),
    )
    if failure_reason:
        obj["failure_reason"] = failure_reason
    return obj


def _charge_refunded(payment, rid, *, ours=True):
    """charge.refunded as it was when the refund had just succeeded."""
    amount = to_minor_units(payment.amount)
    return load(
        "charge",
        id=payment.provider_charge_id,
        amount=amount,
        amount_captured=amount,
        amount_refunded=amount,
        refunded=True,
        currency=payment.currency.lower(),
        payment_intent=payment.provider_payment_id,
        metadata={"payment_id": str(payment.pk), "invoice_id": str(payment.invoice_id)}
        if ours
        else {},
        refunds={
            "object": "list",
            "data": [_refund(payment, rid, status="succeeded", ours=ours)],
            "has_more": False,
            "url": f"/v1/charges/{payment.provider_charge_id}/refunds",
        },
    )


def _failure_events(payment, rid, *, ours=True):
    failed = _refund(
        payment, rid, status="failed", failure_reason="expired_or_canceled_card", ours=ours
    )
    return [event("refund.failed", failed), event("refund.updated", failed)]


def _success_events(payment, rid, *, ours=True):
    return [
        event("charge.refunded", _charge_refunded(payment, rid, ours=ours)),
        event("refund.updated", _refund(payment, rid, status="succeeded", ours=ours)),
    ]


def _staff_refund(payment, http, rid, *, status="pending", reason="goodwill"):
    http.post(f"{API}/v1/refunds", json=_refund(payment, rid, status=status))
    return payments.payment_refund(payment_id=payment.pk, amount=None, actor="staff", reason=reason)


def _audit(action, target):
    return AuditEntry.objects.filter(action=action, object_id=str(target.pk)).count()


def _staff_mails():
    return [m for m in mail.outbox if "Refund of" in m.subject and "failed" in m.subject]


def _assert_money_back(payment, refund, *, paid_at):
    refund.refresh_from_db()
    payment.refresh_from_db()
    invoice = payment.invoice
    invoice.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert refund.failure_reason == "expired_or_canceled_card"
    assert refund.failed_at is not None
    assert payment.status == PaymentStatus.SUCCEEDED and payment.amount_refunded == 0
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_refunded == 0
    assert invoice.paid_at == paid_at
    assert _audit("refund.failed", refund) == 1
    staff = _staff_mails()
    assert len(staff) == 1 and "expired_or_canceled_card" in staff[0].subject


def _assert_new_refund_allowed(payment, http, n):
    http.post(f"{API}/v1/refunds", json=_refund(payment, f"re_again_{n}", status="pending"))
    again = payments.payment_refund(payment_id=payment.pk, amount=None, actor="staff")
    assert again.status == RefundStatus.PENDING and again.amount == payment.amount
    call = http.calls[-1]
    assert call.request.headers["Idempotency-Key"] == f"payment-{payment.pk}-refund-{n}"
    assert parse_qs(call.request.body)["amount"] == [str(to_minor_units(payment.amount))]


# --- (a) a refund that fails at the processor --------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_pending_refund_that_fails_is_recorded_and_a_new_one_may_follow(
    client, paid, http, seed, django_capture_on_commit_callbacks
):
    refund = _staff_refund(paid, http, "re_pending_1")
    assert refund.status == RefundStatus.PENDING
    paid_at = paid.invoice.paid_at
    with django_capture_on_commit_callbacks(execute=True):
        responses_ = deliver_twice_shuffled(
            client, _failure_events(paid, "re_pending_1"), seed=seed
        )
    assert [r.status_code for r in responses_] == [200] * 4
    _assert_money_back(paid, refund, paid_at=paid_at)
    _assert_new_refund_allowed(paid, http, 2)


@pytest.mark.parametrize("seed", range(4))
def test_succeeded_refund_that_fails_later_puts_the_money_back(
    client, paid, http, seed, django_capture_on_commit_callbacks
):
    refund = _staff_refund(paid, http, "re_full_1")
    paid_at = paid.invoice.paid_at
    with django_capture_on_commit_callbacks(execute=True):
        for evt in _success_events(paid, "re_full_1"):
            assert post_event(client, evt).status_code == 200
        paid.invoice.refresh_from_db()
        assert paid.invoice.status == InvoiceStatus.REFUND
        # Then the failure, and every event again in any order: Stripe's failed is final.
        batch = _failure_events(paid, "re_full_1") + _success_events(paid, "re_full_1")
        responses_ = deliver_twice_shuffled(client, batch, seed=seed)
    assert [r.status_code for r in responses_] == [200] * len(responses_)
    _assert_money_back(paid, refund, paid_at=paid_at)
    assert refund.reason == "goodwill"
    assert _audit("invoice.paid", paid.invoice) == 2  # paid, refunded, paid again
    assert _audit("payment.succeeded", paid) == 2
    _assert_new_refund_allowed(paid, http, 2)


@pytest.mark.parametrize("seed", range(4))
def test_refund_made_at_stripe_fails_whatever_order_the_events_come_in(
    client, paid, seed, django_capture_on_commit_callbacks
):
    """A refund made in Stripe's dashboard: its failure may arrive before its success."""
    paid_at = paid.invoice.paid_at
    batch = _failure_events(paid, "re_dash_1", ours=False) + _success_events(
        paid, "re_dash_1", ours=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        responses_ = deliver_twice_shuffled(client, batch, seed=seed)
    assert [r.status_code for r in responses_] == [200] * len(responses_)
    refund = paid.refunds.get()
    assert refund.provider_refund_id == "re_dash_1"
    assert refund.reason == payments.PROVIDER_REFUND_REASON
    _assert_money_back(paid, refund, paid_at=paid_at)


def test_cancelled_refund_is_a_failed_one(client, paid, http, django_capture_on_commit_callbacks):
    refund = _staff_refund(paid, http, "re_cancel_1")
    cancelled = event("refund.updated", _refund(paid, "re_cancel_1", status="canceled"))
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            assert post_event(client, cancelled).status_code == 200
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED and refund.failure_reason == "canceled"
    assert len(_staff_mails()) == 1


def test_sandbox_card_whose_refunds_fail(sandbox_settings, customer):
    invoice = make_invoice(customer=customer)
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payments.payment_record_success(
        payment_id=payment.pk,
        actor="t",
        provider_payment_id=f"pi_sandbox_{payment.pk}",
        last4="5126",
    )
    refund = payments.payment_refund(payment_id=payment.pk, amount=None, actor="staff")
    refund.refresh_from_db()
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert refund.failure_reason == "expired_or_canceled_card"
    assert payment.status == PaymentStatus.SUCCEEDED and payment.amount_refunded == 0
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_refunded == 0
    assert _audit("invoice.refund", invoice) == 1  # it was refunded, then the refund failed
    # A test card that does not fail refunds them as before.
    other = make_invoice(customer=customer)
    ok = payments.payment_create(
        invoice_id=other.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payments.payment_record_success(
        payment_id=ok.pk, actor="t", provider_payment_id=f"pi_sandbox_{ok.pk}", last4="4242"
    )
    assert payments.payment_refund(payment_id=ok.pk, amount=None, actor="s").status == "succeeded"


def test_duplicate_whose_refund_failed_is_not_sent_again_by_reconciliation(
    sandbox_settings, customer, django_capture_on_commit_callbacks
):
    invoice = make_invoice(customer=customer)
    first, second = (
        payments.payment_create(
            invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
        )
        for _ in range(2)
    )
    payments.payment_record_success(payment_id=first.pk, actor="t", provider_payment_id="pi_a")
    with django_capture_on_commit_callbacks(execute=True):
        payments.payment_record_success(
            payment_id=second.pk, actor="t", provider_payment_id="pi_b", last4="5126"
        )
    second.refresh_from_db()
    assert second.is_duplicate and second.status == PaymentStatus.SUCCEEDED
    assert second.refunds.get().status == RefundStatus.FAILED
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=10)):
        payments.payments_reconcile(actor="t")
    assert second.refunds.count() == 1  # sending it again would fail again: staff were told


# --- (b) the confirmation arrives before our refund call returns --------------------------


def _answer_after(client, events, refund_obj):
    def callback(request):
        for evt in events:
            assert post_event(client, evt).status_code == 200
        return 200, {}, json.dumps(refund_obj)

    return callback


@pytest.mark.parametrize("confirmation", ["charge.refunded", "refund.updated"])
def test_confirmation_before_the_refund_call_returns_keeps_the_staff_reason(
    client, paid, http, confirmation
):
    succeeded = _refund(paid, "re_race_1", status="succeeded")
    events = [e for e in _success_events(paid, "re_race_1") if e["type"] == confirmation]
    http.add_callback(
        responses.POST, f"{API}/v1/refunds", callback=_answer_after(client, events, succeeded)
    )
    refund = payments.payment_refund(
        payment_id=paid.pk, amount=None, actor="staff", reason="customer cancelled"
    )
    only = paid.refunds.get()
    assert only.pk == refund.pk
    assert only.status == RefundStatus.SUCCEEDED and only.provider_refund_id == "re_race_1"
    assert only.reason == "customer cancelled"
    assert _audit("refund.requested", only) == 1 and _audit("refund.succeeded", only) == 1
    paid.invoice.refresh_from_db()
    assert paid.invoice.status == InvoiceStatus.REFUND
    assert paid.invoice.amount_refunded == paid.amount


def test_failure_before_the_refund_call_returns_fails_the_staff_refund(client, paid, http):
    events = _failure_events(paid, "re_race_2")[:1]
    answer = _refund(paid, "re_race_2", status="pending")
    http.add_callback(
        responses.POST, f"{API}/v1/refunds", callback=_answer_after(client, events, answer)
    )
    refund = payments.payment_refund(payment_id=paid.pk, amount=None, actor="staff", reason="why")
    only = paid.refunds.get()
    assert only.pk == refund.pk and only.reason == "why"
    assert only.status == RefundStatus.FAILED and only.provider_refund_id == "re_race_2"


def test_confirmation_recorded_as_its_own_row_is_merged_with_an_audit_entry(client, paid, http):
    """However the confirmation came to be recorded on a row of its own first (an older
    event, reconciliation), the placeholder is merged into it, not silently dropped."""

    def callback(request):
        payments.payment_record_refund(
            payment_id=paid.pk,
            amount=paid.amount,
            provider_refund_id="re_race_3",
            actor="stripe webhook",
            reason=payments.PROVIDER_REFUND_REASON,
        )
        return 200, {}, json.dumps(_refund(paid, "re_race_3", status="succeeded"))

    http.add_callback(responses.POST, f"{API}/v1/refunds", callback=callback)
    refund = payments.payment_refund(
        payment_id=paid.pk, amount=None, actor="staff", reason="customer cancelled"
    )
    only = Refund.objects.get(payment=paid)
    assert refund.pk == only.pk and only.provider_refund_id == "re_race_3"
    assert only.reason == "customer cancelled"
    merged = AuditEntry.objects.get(action="refund.merged", object_id=str(only.pk))
    assert merged.note == "customer cancelled"


# --- (c) voiding an invoice closes its Pay online sessions ------------------------------


def test_void_expires_open_stripe_sessions(
    stripe_settings, customer, http, django_capture_on_commit_callbacks
):
    invoice = make_invoice(customer=customer)
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payment.provider_checkout_id = "cs_test_void_1"
    payment.checkout_url = "https://checkout.stripe.com/c/pay/cs_test_void_1"
    payment.save()
    http.post(
        f"{API}/v1/checkout/sessions/cs_test_void_1/expire",
        json=load("checkout_session", id="cs_test_void_1", status="expired"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        invoice_services.invoice_void(
            invoice_id=invoice.pk, actor="staff", reason="issued in error"
        )
    assert [c.request.url for c in http.calls] == [
        f"{API}/v1/checkout/sessions/cs_test_void_1/expire"
    ]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CANCELLED


def test_void_closes_the_sandbox_checkout_page(
    sandbox_settings, client, owner, customer, django_capture_on_commit_callbacks
):
    invoice = make_invoice(customer=customer)
    client.force_login(owner)
    url = client.post(f"/invoices/{invoice.number}/pay/")["Location"]
    assert client.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        invoice_services.invoice_void(invoice_id=invoice.pk, actor="staff")
    assert client.get(url).status_code == 410
    response = client.post(url, {"card": "4242424242424242"})
    assert response.status_code == 410
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID and invoice.amount_paid == Decimal("0")


def test_staff_alert_whose_queuing_was_lost_is_sent_by_the_reminder_run(client, paid, http):
    _staff_refund(paid, http, "re_lost_1")
    # No on-commit callbacks run here: the alert's task was never queued.
    for evt in _failure_events(paid, "re_lost_1"):
        assert post_event(client, evt).status_code == 200
    assert _staff_mails() == []
    tasks.send_reminders()
    tasks.send_reminders()
    assert len(_staff_mails()) == 1
