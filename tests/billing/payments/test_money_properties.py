"""Money invariants under random Stripe histories (issue 12): a property-style test.

Hypothesis draws, for one invoice and one to three Pay online attempts, what happened at
Stripe: each attempt paid any amount (in the invoice's currency or another, by its customer
or someone else), failed, or failed and then paid; staff refunded parts of a paid charge in
the dashboard (refunds that succeed, fail, or succeed and fail later); the payer disputed
it (open, won, lost). Every resulting webhook is signed and POSTed to /stripe/ twice, the
whole list in a drawn order; the endpoint stores each and its queued apply task runs on
commit (tests/fixtures/stripe/helpers.post_event). Stripe's side is kept consistent: a
refund or dispute exists only on a charge that took money, never for more than is left on
it, and Stripe answers the portal's own refund calls (excess and duplicates) as it would:
accepted while they fit, refused on a disputed charge or beyond what is left.

An event that can only be applied after one still on its way (out of order) is stored
failed and replayed once an event has been applied to its payment; the sweep then retries
whatever is still failed, later. A dispute closes weeks after the refunds before it failed,
so their failures come first.

After delivery the database must show (see docs/decisions.md):
1. amount_paid - amount_refunded of the invoice equals the sum of what its payments are
   credited (Payment.amount_credited).
2. Paid means amount_paid reached the total, Open that it did not; credited money came in
   the invoice's currency.
3. Every payment records what Stripe took; what is left of it with us (received - refunds
   succeeded - refunds pending) is what is left on the charge at Stripe, and is credited,
   held for staff, or beyond the invoice only while a refund of it failed (staff told).
   Every delivery is answered 200 and, once the sweep has run, no event is left failed.
"""

import datetime
import itertools
import json
import os
import random
from dataclasses import dataclass, field
from decimal import Decimal
from unittest.mock import patch
from urllib.parse import parse_qs

import pytest
import responses
import time_machine
from django.db import transaction
from django.test import Client, TestCase, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from billing.invoices.documents import pdf as documents
from billing.invoices.models import Invoice, InvoiceStatus
from billing.payments import services, webhooks
from billing.payments.models import (
    Payment,
    PaymentKind,
    PaymentStatus,
    Refund,
    RefundStatus,
    WebhookEvent,
    WebhookEventStatus,
)
from core.money import ZERO, from_minor_units
from tests.factories import CustomerFactory, make_invoice
from tests.fixtures.stripe.helpers import WEBHOOK_SECRET, event, load, post_event

pytestmark = pytest.mark.django_db

API = "https://api.stripe.invalid"
TOTAL_MINOR = 11900
STRIPE = {
    "PAYMENT_PROVIDER": "stripe",
    "STRIPE_SECRET_KEY": "sk_test_" + "p" * 24,
    "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "STRIPE_MAX_NETWORK_RETRIES": 0,
    "STRIPE_API_BASE": API,
}
_ids = itertools.count(1)


# --- What happened at Stripe (drawn) ----------------------------------------------------


@dataclass(frozen=True)
class RefundPlan:
    share: int  # percent of what is left on the charge when staff make it
    fate: str  # succeeded | failed | succeeded_then_failed


@dataclass(frozen=True)
class AttemptPlan:
    outcome: str  # paid | failed | failed_then_paid | nothing
    minor: int
    currency: str
    own_payer: bool
    session_event: bool
    refunds: tuple[RefundPlan, ...]
    dispute: str  # "" | open | won | lost


attempts = st.builds(
    AttemptPlan,
    outcome=st.sampled_from(["paid", "paid", "failed", "failed_then_paid", "nothing"]),
    minor=st.one_of(
        st.integers(1, 2 * TOTAL_MINOR), st.sampled_from([TOTAL_MINOR, TOTAL_MINOR - 1])
    ),
    currency=st.sampled_from(["eur", "eur", "eur", "usd"]),
    own_payer=st.sampled_from([True, True, True, False]),
    session_event=st.booleans(),
    refunds=st.lists(
        st.builds(
            RefundPlan,
            share=st.sampled_from([100, 50, 25, 10, 1]) | st.integers(1, 100),
            fate=st.sampled_from(["succeeded", "succeeded", "failed", "succeeded_then_failed"]),
        ),
        max_size=3,
    ).map(tuple),
    dispute=st.sampled_from(["", "", "", "open", "won", "lost"]),
)


@dataclass
class Charge:
    """One PaymentIntent/charge as Stripe holds it."""

    payment: Payment
    asked: int = TOTAL_MINOR  # minor units
    captured: int = 0
    currency: str = "eur"
    refunds: list[tuple[str, int, str]] = field(default_factory=list)  # id, amount, status
    disputed: str = ""
    dispute_amount: int = 0

    @property
    def pi(self) -> str:
        return f"pi_prop_{self.payment.pk}"

    @property
    def ch(self) -> str:
        return f"ch_prop_{self.payment.pk}"

    @property
    def left(self) -> int:
        """What is still on the charge: refunds that did not fail, a lost dispute, are gone."""
        gone = sum(amount for _, amount, status in self.refunds if status != "failed")
        return self.captured - gone - (self.dispute_amount if self.disputed == "lost" else 0)

    def meta(self) -> dict:
        return {"invoice_id": str(self.payment.invoice_id), "payment_id": str(self.payment.pk)}


def _intent(charge: Charge, *, payer: str, status: str) -> dict:
    paid = status == "succeeded"
    return load(
        "payment_intent",
        id=charge.pi,
        amount=charge.asked,
        amount_received=charge.captured if paid else 0,
        currency=charge.currency,
        customer=payer,
        metadata=charge.meta(),
        status=status,
        latest_charge=charge.ch,
        last_payment_error=None
        if paid
        else {"type": "card_error", "code": "card_declined", "message": "Declined."},
        next_action=None,
    )


def _session(charge: Charge, *, payer: str) -> dict:
    return load(
        "checkout_session",
        id=charge.payment.provider_checkout_id,
        amount_total=charge.captured,
        amount_subtotal=charge.captured,
        currency=charge.currency,
        customer=payer,
        metadata=charge.meta(),
        payment_intent=charge.pi,
        payment_status="paid",
        status="complete",
    )


def _refund(charge: Charge, rid: str, amount: int, status: str) -> dict:
    obj = load(
        "refund",
        id=rid,
        amount=amount,
        charge=charge.ch,
        payment_intent=charge.pi,
        currency=charge.currency,
        status=status,
        metadata={},  # made in the dashboard, not by the portal
    )
    if status == "failed":
        obj["failure_reason"] = "expired_or_canceled_card"
    return obj


def _charge_refunded(charge: Charge, payer: str) -> dict:
    """charge.refunded as Stripe sends it now: the refunds that stand, and their sum."""
    standing = [(rid, amount) for rid, amount, status in charge.refunds if status == "succeeded"]
    refunded = sum(amount for _, amount in standing)
    return load(
        "charge",
        id=charge.ch,
        amount=charge.captured,
        amount_captured=charge.captured,
        amount_refunded=refunded,
        refunded=refunded == charge.captured,
        currency=charge.currency,
        customer=payer,
        payment_intent=charge.pi,
        metadata=charge.meta(),
        refunds={
            "object": "list",
            "data": [_refund(charge, rid, amount, "succeeded") for rid, amount in standing],
            "has_more": False,
            "url": f"/v1/charges/{charge.ch}/refunds",
        },
    )


def _stripe_history(charge: Charge, plan: AttemptPlan, payer: str) -> list[dict]:
    """The attempt's events, in the order things happened at Stripe (delivery reorders them)."""
    events = []
    if plan.outcome in ("failed", "failed_then_paid"):
        events.append(
            event("payment_intent.payment_failed", _intent(charge, payer=payer, status="failed"))
        )
    if plan.outcome not in ("paid", "failed_then_paid"):
        return events
    charge.captured = plan.minor
    events.append(
        event("payment_intent.succeeded", _intent(charge, payer=payer, status="succeeded"))
    )
    if plan.session_event:
        events.append(event("checkout.session.completed", _session(charge, payer=payer)))
    for n, refund in enumerate(plan.refunds, start=1):
        amount = charge.left * refund.share // 100
        if amount <= 0:
            continue  # nothing left to refund: staff could not have made it
        rid = f"re_prop_{charge.payment.pk}_{n}"
        charge.refunds.append((rid, amount, "succeeded"))
        if refund.fate == "failed":
            # Pending, then the processor gave up: the money never left.
            charge.refunds[-1] = (rid, amount, "failed")
            failed = _refund(charge, rid, amount, "failed")
            events += [event("refund.failed", failed), event("refund.updated", failed)]
            continue
        events += [
            event("charge.refunded", _charge_refunded(charge, payer)),
            event("refund.updated", _refund(charge, rid, amount, "succeeded")),
        ]
        if refund.fate == "succeeded_then_failed":
            charge.refunds[-1] = (rid, amount, "failed")
            events.append(event("refund.updated", _refund(charge, rid, amount, "failed")))
    if plan.dispute and charge.left > 0:
        charge.dispute_amount = charge.left
        dispute = load(
            "dispute",
            id=f"dp_prop_{charge.payment.pk}",
            amount=charge.dispute_amount,
            charge=charge.ch,
            payment_intent=charge.pi,
            currency=charge.currency,
            status="needs_response",
        )
        charge.disputed = "open"
        events.append(event("charge.dispute.created", dispute))
        if plan.dispute in ("won", "lost"):
            charge.disputed = plan.dispute
            events.append(event("charge.dispute.closed", {**dispute, "status": plan.dispute}))
    return events


def _stripe_refunds_api(charges: dict[str, Charge]):
    """POST /v1/refunds as Stripe answers it, against the charges' state (idempotent per key)."""
    answered: dict[str, tuple[int, dict]] = {}

    def callback(request):
        key = request.headers["Idempotency-Key"]
        if key not in answered:
            form = {k: v[0] for k, v in parse_qs(request.body).items()}
            charge = charges[form["payment_intent"]]
            amount = int(form["amount"])
            if charge.disputed:
                answered[key] = 400, _error("charge_disputed")
            elif amount > charge.left:
                answered[key] = 400, _error("amount_too_large")
            else:
                rid = f"re_portal_{next(_ids)}"
                charge.refunds.append((rid, amount, "pending"))
                refund = _refund(charge, rid, amount, "pending")
                refund["metadata"] = form_metadata(form)
                answered[key] = 200, refund
        status, body = answered[key]
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    return callback


def form_metadata(form: dict) -> dict:
    return {
        name[len("metadata[") : -1]: value
        for name, value in form.items()
        if name.startswith("metadata[")
    }


def _error(code: str) -> dict:
    return {"error": {"type": "invalid_request_error", "code": code, "message": code}}


# --- The invariants ---------------------------------------------------------------------


def _say(text: str) -> None:
    """Shown with a falsifying example (the regression tests below run outside Hypothesis)."""
    if currently_in_test_context():
        note(text)


def _assert_invariants(invoice: Invoice, charges: list[Charge]) -> None:
    invoice.refresh_from_db()
    total = invoice.total
    credited = ZERO
    for charge in charges:
        payment = Payment.objects.get(pk=charge.payment.pk)
        refunds = list(payment.refunds.all())
        _say(
            f"payment {payment.pk}: {payment.status} {payment.amount_received} "
            f"{payment.currency_received} credited {payment.amount_credited} refunded "
            f"{payment.amount_refunded} "
            f"{[(r.amount, r.status, r.invoice_share, r.idempotency_key) for r in refunds]}; "
            f"Stripe left {charge.left}"
        )
        succeeded = sum((r.amount for r in refunds if r.status == RefundStatus.SUCCEEDED), ZERO)
        pending = sum((r.amount for r in refunds if r.status == RefundStatus.PENDING), ZERO)
        assert payment.amount_refunded == succeeded
        if not charge.captured:
            # Stripe took nothing: nothing recorded, nothing refunded.
            assert payment.status in (PaymentStatus.PENDING, PaymentStatus.FAILED)
            assert payment.amount_received is None and not refunds
            assert payment.amount_credited == ZERO
            continue
        # 3. What Stripe took is recorded as it is...
        assert payment.status in services.MONEY_RECORDED
        assert payment.amount_received == from_minor_units(charge.captured)
        assert payment.currency_received == charge.currency.upper()
        # ...what is left of it with us is what is left on the charge at Stripe...
        with_us = payment.amount_received - succeeded - pending
        assert with_us == from_minor_units(charge.left)
        # ...and it is credited to the invoice, held for staff, or (for money the invoice
        # never held) on its way back; only when the processor refused to return it does it
        # wait, and staff were told (a failed refund).
        if payment.held_reason:
            assert payment.amount_credited == ZERO
            assert payment.status == PaymentStatus.HELD or with_us == ZERO
            continue
        assert ZERO <= payment.amount_credited <= with_us
        if payment.amount_credited < with_us:
            assert any(r.status == RefundStatus.FAILED for r in refunds)
        if payment.amount_credited:
            # Credited money arrived in the invoice's currency.
            assert payment.currency_received == invoice.currency
        credited += payment.amount_credited
    _say(f"invoice: {invoice.status} paid {invoice.amount_paid} refunded {invoice.amount_refunded}")
    # 1. The invoice holds exactly what its payments were credited, less what they took back.
    assert invoice.amount_paid - invoice.amount_refunded == credited
    # 2. Paid only at the total; Open below it.
    assert ZERO <= invoice.amount_refunded <= invoice.amount_paid <= total
    if invoice.status == InvoiceStatus.PAID:
        assert invoice.amount_paid == total and invoice.amount_refunded < total
    elif invoice.status == InvoiceStatus.REFUND:
        assert invoice.amount_paid == total == invoice.amount_refunded
    else:
        assert invoice.status == InvoiceStatus.OPEN, invoice.status
        assert invoice.amount_paid < total and invoice.amount_refunded == ZERO


# --- The property -----------------------------------------------------------------------


def _refund_failure_of(evt: dict, charge_id: str) -> bool:
    obj = evt["data"]["object"]
    return (
        evt["type"].startswith("refund.")
        and obj["status"] == "failed"
        and obj["charge"] == charge_id
    )


def _weeks_later(batch: list[dict]) -> list[dict]:
    """A dispute closes weeks after the refunds before it failed, and Stripe retries a
    delivery for three days: the charge's refund failures arrive (once at least) before the
    dispute's close. (A lost dispute is recorded up to what is left of the payment.)"""
    out: list[dict] = []
    pulled: list[str] = []
    for evt in batch:
        if evt["id"] in pulled:
            pulled.remove(evt["id"])
            continue
        if evt["type"] == "charge.dispute.closed":
            delivered = {e["id"] for e in out}
            for early in batch:
                charge_id = evt["data"]["object"]["charge"]
                if early["id"] not in delivered and _refund_failure_of(early, charge_id):
                    out.append(early)
                    delivered.add(early["id"])
                    pulled.append(early["id"])
        out.append(evt)
    return out


def _deliver(client: Client, batch: list[dict]) -> None:
    """POST each event; each is stored, answered 200 and applied by its task."""
    for evt in batch:
        # Each delivery is its own request: what it queues after commit runs before the next.
        with TestCase.captureOnCommitCallbacks(execute=True):
            answer = post_event(client, evt)
        assert answer.status_code == 200, (evt["type"], answer.content)


def _sweep_until_settled(rounds: int) -> None:
    """The sweep, run later and again, as it runs in production: what is still failed is
    retried until it applies."""
    later = timezone.now()
    for _ in range(rounds):
        if not WebhookEvent.objects.filter(status=WebhookEventStatus.FAILED).exists():
            return
        later += webhooks.RETRY_AFTER + datetime.timedelta(seconds=1)
        with (
            time_machine.travel(later, tick=False),
            TestCase.captureOnCommitCallbacks(execute=True),
        ):
            webhooks.webhook_events_sweep()


def _run_history(plans: list[AttemptPlan], data) -> None:
    customer = CustomerFactory()
    customer.stripe_customer_id = f"cus_prop_{customer.pk}"
    customer.save()
    invoice = make_invoice(customer=customer)
    assert (invoice.total, invoice.currency) == (from_minor_units(TOTAL_MINOR), "EUR")
    charges, history = [], []
    for plan in plans:
        note(repr(plan))
        payment = services.payment_create(
            invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
        )
        payment.provider_checkout_id = f"cs_prop_{payment.pk}"
        payment.save()
        charge = Charge(payment=payment, currency=plan.currency)
        payer = customer.stripe_customer_id if plan.own_payer else "cus_prop_someone_else"
        history += _stripe_history(charge, plan, payer)
        charges.append(charge)
    batch = data.draw(st.permutations([*history, *history]), label="delivery order")
    batch = _weeks_later(batch)
    client = Client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        http.add_callback(
            responses.POST,
            f"{API}/v1/refunds",
            callback=_stripe_refunds_api({c.pi: c for c in charges}),
        )
        _deliver(client, batch)
        _sweep_until_settled(rounds=len(batch))
    failed = WebhookEvent.objects.filter(status=WebhookEventStatus.FAILED)
    assert not failed.exists(), list(failed.values_list("type", "note"))
    _assert_invariants(invoice, charges)


@settings(
    max_examples=int(os.environ.get("MONEY_EXAMPLES", "50")),
    # No shrinking: a failing history is printed as found, with each payment's state (shrinking
    # one takes longer than the suite's timeout).
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    # Every example makes its own customer, invoice and Stripe ids, and rolls its rows back.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=st.lists(attempts, min_size=1, max_size=3), data=st.data())
@override_settings(**STRIPE)
def test_random_stripe_histories_keep_the_money_invariants(plans, data):
    # The invoice PDF each status change renders is beside the point here, and slow.
    with (
        patch.object(documents, "render_invoice_pdf_bytes", lambda *a, **kw: b"%PDF-1.4"),
        transaction.atomic(),
    ):
        _run_history(plans, data)
        transaction.set_rollback(True)


# --- What the property found ------------------------------------------------------------


def _stripe_payment(invoice: Invoice) -> Charge:
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payment.provider_checkout_id = f"cs_prop_{payment.pk}"
    payment.save()
    return Charge(payment=payment)


def _paid_invoice_customer():
    customer = CustomerFactory()
    customer.stripe_customer_id = f"cus_prop_{customer.pk}"
    customer.save()
    return customer


@pytest.mark.parametrize("seed", range(4))
@override_settings(**STRIPE)
def test_refund_at_stripe_of_an_overpayment_returns_the_excess_first(
    client, django_capture_on_commit_callbacks, seed
):
    """0.01 paid, then 119.00 more, all of it refunded in the dashboard before our refund
    of the 0.01 excess went out: 118.99 comes off the invoice, not 119.00 (which would
    leave the first 0.01 with us while the invoice shows every cent refunded)."""
    customer = _paid_invoice_customer()
    invoice = make_invoice(customer=customer)
    payer = customer.stripe_customer_id
    first, second = _stripe_payment(invoice), _stripe_payment(invoice)
    first.captured, second.captured = 1, TOTAL_MINOR
    second.refunds.append((f"re_prop_{second.payment.pk}_1", TOTAL_MINOR, "succeeded"))
    with django_capture_on_commit_callbacks(execute=True):
        # The cent arrives first; the two events of the second payment in either order.
        assert (
            post_event(
                client,
                event("payment_intent.succeeded", _intent(first, payer=payer, status="succeeded")),
            ).status_code
            == 200
        )
    later = [
        event("payment_intent.succeeded", _intent(second, payer=payer, status="succeeded")),
        event("charge.refunded", _charge_refunded(second, payer)),
    ]
    batch = [*later, *later]
    random.Random(seed).shuffle(batch)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        http.add_callback(
            responses.POST,
            f"{API}/v1/refunds",
            callback=_stripe_refunds_api({c.pi: c for c in (first, second)}),
        )
        for evt in batch:
            with django_capture_on_commit_callbacks(execute=True):
                assert post_event(client, evt).status_code == 200
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_refunded) == (
        InvoiceStatus.PAID,
        Decimal("119.00"),
        Decimal("118.99"),
    )
    refund = Refund.objects.get(provider_refund_id=f"re_prop_{second.payment.pk}_1")
    assert refund.invoice_share == Decimal("118.99")
    _assert_invariants(invoice, [first, second])


@override_settings(**STRIPE)
def test_stale_refund_success_that_does_not_fit_is_retried_after_the_failure(client):
    """Stripe refunded 1.38 of a 1.75 charge, the refund failed, then 0.52 was refunded. The
    1.38 success and the 0.52 refund arrive before the failure: 0.52 does not fit in what we
    think is left, so its event waits (stored failed, out of order; the endpoint answered 200)
    and is applied as soon as the failure has been, without another delivery."""
    customer = _paid_invoice_customer()
    invoice = make_invoice(customer=customer)
    payer = customer.stripe_customer_id
    charge = _stripe_payment(invoice)
    charge.captured = 175
    succeeded = event("payment_intent.succeeded", _intent(charge, payer=payer, status="succeeded"))
    r1 = f"re_prop_{charge.payment.pk}_1"
    charge.refunds.append((r1, 138, "succeeded"))
    r1_succeeded = event("charge.refunded", _charge_refunded(charge, payer))
    charge.refunds[-1] = (r1, 138, "failed")
    r1_failed = event("refund.updated", _refund(charge, r1, 138, "failed"))
    charge.refunds.append((f"re_prop_{charge.payment.pk}_2", 52, "succeeded"))
    r2_succeeded = event("charge.refunded", _charge_refunded(charge, payer))

    answers = [post_event(client, e).status_code for e in (succeeded, r1_succeeded, r2_succeeded)]
    assert answers == [200, 200, 200]
    stored = WebhookEvent.objects.get(event_id=r2_succeeded["id"])
    assert stored.status == WebhookEventStatus.FAILED
    assert stored.note.startswith(webhooks.OUT_OF_ORDER_NOTE)
    assert "waits for a refund failure" in stored.note
    assert Payment.objects.get(pk=charge.payment.pk).amount_refunded == Decimal("1.38")
    assert post_event(client, r1_failed).status_code == 200
    stored.refresh_from_db()
    assert (stored.status, stored.note) == (WebhookEventStatus.PROCESSED, "applied")
    # Stripe's own retry of the event, later, changes nothing.
    assert post_event(client, r2_succeeded).status_code == 200
    invoice.refresh_from_db()
    payment = Payment.objects.get(pk=charge.payment.pk)
    assert payment.amount_refunded == Decimal("0.52")
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.OPEN, Decimal("1.23"))
    _assert_invariants(invoice, [charge])


@override_settings(**STRIPE)
def test_events_waiting_for_the_payment_are_replayed_in_the_order_they_came(client):
    """A refund's failure, then the lost dispute after it, both arrive before we know the
    payment. Replayed newest first, the dispute was set against money the failed refund had
    not given back yet and recorded short (110.67 of 119.00)."""
    customer = _paid_invoice_customer()
    invoice = make_invoice(customer=customer)
    payer = customer.stripe_customer_id
    charge = _stripe_payment(invoice)
    charge.captured = TOTAL_MINOR
    rid = f"re_prop_{charge.payment.pk}_1"
    charge.refunds.append((rid, 833, "succeeded"))
    refunded = event("charge.refunded", _charge_refunded(charge, payer))
    charge.refunds[-1] = (rid, 833, "failed")
    failed = event("refund.updated", _refund(charge, rid, 833, "failed"))
    charge.disputed, charge.dispute_amount = "lost", TOTAL_MINOR
    dispute = load(
        "dispute",
        id=f"dp_prop_{charge.payment.pk}",
        amount=TOTAL_MINOR,
        charge=charge.ch,
        payment_intent=charge.pi,
        currency="eur",
        status="lost",
    )
    closed = event("charge.dispute.closed", dispute)
    for evt in (failed, closed, refunded):
        assert post_event(client, evt).status_code == 200
    payment = Payment.objects.get(pk=charge.payment.pk)
    assert payment.refunds.get(provider_refund_id=dispute["id"]).amount == Decimal("119.00")
    assert (payment.status, payment.amount_refunded) == (PaymentStatus.REFUNDED, Decimal("119.00"))
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.REFUND
    _assert_invariants(invoice, [charge])


@override_settings(**STRIPE)
def test_waiting_refund_that_does_not_fit_yet_keeps_waiting(client):
    """The 0.52 refund waited for the payment; the 1.38 refund (which failed later) brought
    the payment, and the 0.52 replayed after it did not fit: the event that was applied is
    answered 200, and the 0.52 is recorded once the failure is in."""
    customer = _paid_invoice_customer()
    invoice = make_invoice(customer=customer)
    payer = customer.stripe_customer_id
    charge = _stripe_payment(invoice)
    charge.captured = 175
    r1, r2 = (f"re_prop_{charge.payment.pk}_{n}" for n in (1, 2))
    charge.refunds.append((r1, 138, "succeeded"))
    r1_succeeded = event("charge.refunded", _charge_refunded(charge, payer))
    charge.refunds[-1] = (r1, 138, "failed")
    r1_failed = event("refund.updated", _refund(charge, r1, 138, "failed"))
    charge.refunds.append((r2, 52, "succeeded"))
    r2_succeeded = event("refund.updated", _refund(charge, r2, 52, "succeeded"))

    answers = [post_event(client, e).status_code for e in (r2_succeeded, r1_succeeded, r1_failed)]
    assert answers == [200, 200, 200]
    payment = Payment.objects.get(pk=charge.payment.pk)
    assert payment.amount_refunded == Decimal("0.52")
    assert payment.refunds.get(provider_refund_id=r2).status == RefundStatus.SUCCEEDED
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.OPEN, Decimal("1.23"))
    _assert_invariants(invoice, [charge])


@override_settings(**STRIPE)
def test_refund_failure_puts_back_only_what_is_with_us_again(
    client, django_capture_on_commit_callbacks
):
    """230.78 paid for 119.00: the 111.78 excess goes back. In the dashboard 95.77 was
    refunded (it failed later) and 39.23. Their successes come before the failure, so the
    39.23 found the invoice's money already taken by the 95.77: when that fails, what comes
    back to the invoice is what is with us again (79.77), not all 95.77."""
    customer = _paid_invoice_customer()
    invoice = make_invoice(customer=customer)
    payer = customer.stripe_customer_id
    charge = _stripe_payment(invoice)
    charge.captured = 23078
    r1, r2 = (f"re_prop_{charge.payment.pk}_{n}" for n in (1, 2))
    charge.refunds += [(r1, 3923, "succeeded"), (r2, 9577, "failed")]
    events = [
        event("payment_intent.succeeded", _intent(charge, payer=payer, status="succeeded")),
        event("refund.updated", _refund(charge, r2, 9577, "succeeded")),
        event("refund.updated", _refund(charge, r1, 3923, "succeeded")),
        event("refund.updated", _refund(charge, r2, 9577, "failed")),
    ]
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        http.add_callback(
            responses.POST, f"{API}/v1/refunds", callback=_stripe_refunds_api({charge.pi: charge})
        )
        for evt in events:
            with django_capture_on_commit_callbacks(execute=True):
                assert post_event(client, evt).status_code == 200
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_refunded) == (
        InvoiceStatus.PAID,
        Decimal("119.00"),
        Decimal("39.23"),
    )
    assert Payment.objects.get(pk=charge.payment.pk).amount_credited == Decimal("79.77")
    _assert_invariants(invoice, [charge])
