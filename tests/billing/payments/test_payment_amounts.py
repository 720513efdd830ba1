"""What a provider says it received is what is credited (issue 12, defect 1).

A short payment leaves the rest due, an overpayment is credited up to the total and the
excess handed back, another currency or another payer is held for staff: never credited,
never lost. Stripe through signed webhooks (every event twice, in shuffled orders), the
sandbox through the same provider events its checkout page sends.
"""

import logging
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import responses
from django.contrib.auth.models import Permission
from django.core import mail

from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import PaymentKind, PaymentStatus, RefundStatus, WebhookEvent
from billing.payments.providers import sandbox
from core.money import to_minor_units
from tests.factories import UserFactory, make_invoice
from tests.fixtures.stripe.helpers import (
    WEBHOOK_SECRET,
    deliver_twice_shuffled,
    event,
    load,
    post_event,
)

pytestmark = pytest.mark.django_db

API = "https://api.stripe.invalid"
PAYER = "cus_QXg1o8vcGmoR32"
TOTAL = Decimal("119.00")


def _staff_alerts():
    return [m for m in mail.outbox if "held" in m.subject]


def _all_ok(responses_):
    assert [r.status_code for r in responses_] == [200] * len(responses_)


# --- Stripe -------------------------------------------------------------------------


@pytest.fixture
def stripe_settings(settings):
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_" + "a" * 24
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_API_BASE = API


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def stripe_payment(stripe_settings, customer):
    customer.stripe_customer_id = PAYER
    customer.save()
    invoice = make_invoice(customer=customer)
    assert invoice.total == TOTAL and invoice.currency == "EUR"
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payment.provider_checkout_id = f"cs_test_{payment.pk}"
    payment.save()
    return payment


def _form(call) -> dict:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def _meta(payment):
    return {"invoice_id": str(payment.invoice_id), "payment_id": str(payment.pk)}


def _session(payment, *, minor, currency="eur", customer=PAYER):
    return load(
        "checkout_session",
        id=payment.provider_checkout_id,
        amount_total=minor,
        amount_subtotal=minor,
        currency=currency,
        customer=customer,
        metadata=_meta(payment),
        payment_intent=f"pi_test_{payment.pk}",
        payment_status="paid",
        status="complete",
    )


def _intent(payment, *, minor, currency="eur", customer=PAYER):
    return load(
        "payment_intent",
        id=f"pi_test_{payment.pk}",
        amount=to_minor_units(payment.amount),
        amount_received=minor,
        currency=currency,
        customer=customer,
        metadata=_meta(payment),
        status="succeeded",
        latest_charge=f"ch_test_{payment.pk}",
        last_payment_error=None,
    )


def _paid_events(payment, **kw):
    return [
        event("checkout.session.completed", _session(payment, **kw)),
        event("payment_intent.succeeded", _intent(payment, **kw)),
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stripe_short_payment_leaves_the_rest_due(client, stripe_payment, seed):
    _all_ok(deliver_twice_shuffled(client, _paid_events(stripe_payment, minor=100), seed=seed))
    invoice = stripe_payment.invoice
    invoice.refresh_from_db()
    stripe_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert (invoice.amount_paid, invoice.amount_remaining) == (Decimal("1.00"), Decimal("118.00"))
    assert stripe_payment.status == PaymentStatus.SUCCEEDED and not stripe_payment.is_duplicate
    assert (stripe_payment.amount_received, stripe_payment.currency_received) == (
        Decimal("1.00"),
        "EUR",
    )
    assert not stripe_payment.refunds.exists()
    # The next attempt asks for the rest.
    rest = payments.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.CHECKOUT, actor="t"
    )
    assert rest.amount == Decimal("118.00")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stripe_overpayment_pays_the_total_and_refunds_the_excess(
    client, stripe_payment, http, django_capture_on_commit_callbacks, seed
):
    http.post(f"{API}/v1/refunds", json=load("refund", id="re_excess_1", amount=5000))
    with django_capture_on_commit_callbacks(execute=True):
        _all_ok(
            deliver_twice_shuffled(client, _paid_events(stripe_payment, minor=16900), seed=seed)
        )
    invoice = stripe_payment.invoice
    invoice.refresh_from_db()
    stripe_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == TOTAL
    assert stripe_payment.amount_received == Decimal("169.00")
    # The excess goes back once, through the duplicate path (reason and key), whatever came twice.
    assert len(http.calls) == 1
    sent = _form(http.calls[0])
    assert (sent["reason"], sent["amount"]) == ("duplicate", "5000")
    assert (
        http.calls[0].request.headers["Idempotency-Key"] == f"payment-{stripe_payment.pk}-excess-1"
    )
    refund = stripe_payment.refunds.get()
    assert (refund.amount, refund.provider_refund_id) == (Decimal("50.00"), "re_excess_1")
    # Stripe confirms the excess refund: the invoice it never paid is untouched.
    charge = load(
        "charge",
        id=f"ch_test_{stripe_payment.pk}",
        amount=16900,
        amount_captured=16900,
        amount_refunded=5000,
        currency="eur",
        payment_intent=f"pi_test_{stripe_payment.pk}",
        metadata=_meta(stripe_payment),
        refunds={"object": "list", "data": [load("refund", id="re_excess_1", amount=5000)]},
    )
    _all_ok([post_event(client, event("charge.refunded", charge)) for _ in range(2)])
    invoice.refresh_from_db()
    stripe_payment.refresh_from_db()
    assert stripe_payment.refunds.get().status == RefundStatus.SUCCEEDED
    assert stripe_payment.amount_refunded == Decimal("50.00")
    assert stripe_payment.status == PaymentStatus.SUCCEEDED
    assert invoice.status == InvoiceStatus.PAID
    assert (invoice.amount_paid, invoice.amount_refunded) == (TOTAL, Decimal("0.00"))


def _assert_held(payment, *, amount, currency, reason_part):
    payment.refresh_from_db()
    invoice = payment.invoice
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.HELD
    assert reason_part in payment.held_reason
    assert (payment.amount_received, payment.currency_received) == (amount, currency)
    assert invoice.status == InvoiceStatus.OPEN
    assert (invoice.amount_paid, invoice.amount_remaining) == (Decimal("0.00"), TOTAL)
    assert not payment.refunds.exists()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stripe_other_currency_is_held_for_staff(
    client, stripe_payment, django_capture_on_commit_callbacks, caplog, settings, seed
):
    caplog.set_level(logging.ERROR, logger="billing.payments.services")
    with django_capture_on_commit_callbacks(execute=True):
        _all_ok(
            deliver_twice_shuffled(
                client, _paid_events(stripe_payment, minor=11900, currency="inr"), seed=seed
            )
        )
    _assert_held(stripe_payment, amount=TOTAL, currency="INR", reason_part="119.00 INR")
    (alert,) = _staff_alerts()
    assert alert.to == [email for _, email in settings.ADMINS]
    assert stripe_payment.invoice.number in alert.subject
    assert "INR" in alert.body
    assert caplog.text.count("STAFF:") == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stripe_other_customer_is_held_for_staff(
    client, stripe_payment, django_capture_on_commit_callbacks, seed
):
    with django_capture_on_commit_callbacks(execute=True):
        _all_ok(
            deliver_twice_shuffled(
                client,
                _paid_events(stripe_payment, minor=11900, customer="cus_SomeoneElse"),
                seed=seed,
            )
        )
    _assert_held(stripe_payment, amount=TOTAL, currency="EUR", reason_part="cus_SomeoneElse")
    assert len(_staff_alerts()) == 1


def test_stripe_success_without_an_amount_is_held(client, stripe_payment):
    intent = _intent(stripe_payment, minor=11900)
    del intent["amount_received"]
    _all_ok(deliver_twice_shuffled(client, [event("payment_intent.succeeded", intent)]))
    _assert_held(stripe_payment, amount=None, currency="EUR", reason_part="did not say")


def test_stripe_dispute_before_the_short_success_waits_for_it(client, stripe_payment):
    """A dispute names no amount received: it must not credit the asked amount blindly."""
    stripe_payment.provider_payment_id = f"pi_test_{stripe_payment.pk}"
    stripe_payment.save()
    dispute = load(
        "dispute",
        id="dp_short_1",
        amount=100,
        currency="eur",
        charge=f"ch_test_{stripe_payment.pk}",
        payment_intent=f"pi_test_{stripe_payment.pk}",
        status="needs_response",
    )
    disputed = event("charge.dispute.created", dispute)
    succeeded = event("payment_intent.succeeded", _intent(stripe_payment, minor=100))
    _all_ok([post_event(client, e) for e in (disputed, disputed, succeeded, succeeded)])
    invoice = stripe_payment.invoice
    invoice.refresh_from_db()
    stripe_payment.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.OPEN, Decimal("1.00"))
    # Replayed once the success was applied.
    assert stripe_payment.dispute_status == "needs_response"
    assert WebhookEvent.objects.get(event_id=disputed["id"]).note == "applied"


def test_stripe_reconciled_success_without_an_amount_is_held(stripe_payment, http):
    session = load(
        "checkout_session",
        id=stripe_payment.provider_checkout_id,
        status="complete",
        payment_status="paid",
        payment_intent=f"pi_test_{stripe_payment.pk}",
    )
    http.get(f"{API}/v1/checkout/sessions/{stripe_payment.provider_checkout_id}", json=session)
    payments.payments_reconcile(actor="t", older_than_minutes=0)
    _assert_held(stripe_payment, amount=None, currency="", reason_part="did not say")


def test_stripe_held_payment_is_refunded_from_admin(
    client, stripe_payment, http, django_capture_on_commit_callbacks, staff
):
    with django_capture_on_commit_callbacks(execute=True):
        _all_ok(
            deliver_twice_shuffled(
                client, _paid_events(stripe_payment, minor=11900, currency="inr")
            )
        )
    client.force_login(staff)
    listing = client.get("/admin/payments/payment/?status__exact=held")
    assert listing.status_code == 200
    assert f"/admin/payments/payment/{stripe_payment.pk}/change/" in listing.content.decode()
    http.post(f"{API}/v1/refunds", json=load("refund", id="re_held_1", amount=11900))
    client.post(
        "/admin/payments/payment/",
        {"action": "refund_held", "_selected_action": [stripe_payment.pk]},
    )
    assert _form(http.calls[0])["amount"] == "11900"
    charge = load(
        "charge",
        id=f"ch_test_{stripe_payment.pk}",
        amount=11900,
        amount_captured=11900,
        amount_refunded=11900,
        currency="inr",
        payment_intent=f"pi_test_{stripe_payment.pk}",
        metadata=_meta(stripe_payment),
        refunds={"object": "list", "data": [load("refund", id="re_held_1", amount=11900)]},
    )
    _all_ok([post_event(client, event("charge.refunded", charge)) for _ in range(2)])
    stripe_payment.refresh_from_db()
    invoice = stripe_payment.invoice
    invoice.refresh_from_db()
    assert stripe_payment.status == PaymentStatus.REFUNDED
    assert stripe_payment.amount_refunded == TOTAL
    assert invoice.status == InvoiceStatus.OPEN
    assert (invoice.amount_paid, invoice.amount_refunded) == (Decimal("0.00"), Decimal("0.00"))


# --- Sandbox ------------------------------------------------------------------------


@pytest.fixture
def sandbox_payment(settings, customer):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True
    invoice = make_invoice(customer=customer)
    return payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )


CARD = sandbox.card_for_last4("4242")


def _sandbox_pays(payment, times=2, **kw):
    for _ in range(times):
        payments.provider_event_apply(
            sandbox.success_event(payment.pk, CARD, **kw), actor="sandbox"
        )


def test_sandbox_short_payment_leaves_the_rest_due(sandbox_payment):
    _sandbox_pays(sandbox_payment, amount=Decimal("1.00"))
    failed = sandbox.failure_event(sandbox_payment.pk, code="card_declined", message="late")
    payments.provider_event_apply(failed, actor="sandbox")  # a late failure changes nothing
    invoice = sandbox_payment.invoice
    invoice.refresh_from_db()
    sandbox_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert (invoice.amount_paid, invoice.amount_remaining) == (Decimal("1.00"), Decimal("118.00"))
    assert sandbox_payment.status == PaymentStatus.SUCCEEDED
    assert sandbox_payment.amount_received == Decimal("1.00")


def test_sandbox_short_payment_refunded_is_owed_again(sandbox_payment):
    _sandbox_pays(sandbox_payment, amount=Decimal("1.00"))
    payments.payment_refund(payment_id=sandbox_payment.pk, amount=None, actor="staff")
    invoice = sandbox_payment.invoice
    invoice.refresh_from_db()
    sandbox_payment.refresh_from_db()
    assert sandbox_payment.status == PaymentStatus.REFUNDED
    assert invoice.status == InvoiceStatus.OPEN
    assert (invoice.amount_paid, invoice.amount_remaining) == (Decimal("0.00"), TOTAL)


def test_sandbox_overpayment_pays_the_total_and_refunds_the_excess(
    sandbox_payment, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _sandbox_pays(sandbox_payment, amount=Decimal("130.00"))
    invoice = sandbox_payment.invoice
    invoice.refresh_from_db()
    sandbox_payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert (invoice.amount_paid, invoice.amount_refunded) == (TOTAL, Decimal("0.00"))
    refund = sandbox_payment.refunds.get()
    assert (refund.amount, refund.status) == (Decimal("11.00"), RefundStatus.SUCCEEDED)
    assert sandbox_payment.amount_refunded == Decimal("11.00")
    assert sandbox_payment.status == PaymentStatus.SUCCEEDED


def test_sandbox_other_currency_is_held(sandbox_payment, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _sandbox_pays(sandbox_payment, amount=TOTAL, currency="INR")
    _assert_held(sandbox_payment, amount=TOTAL, currency="INR", reason_part="INR")
    assert len(_staff_alerts()) == 1


def test_sandbox_other_customer_is_held(sandbox_payment, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _sandbox_pays(sandbox_payment, customer_ref="sandbox_cus_999999")
    _assert_held(sandbox_payment, amount=TOTAL, currency="EUR", reason_part="sandbox_cus_999999")
    assert len(_staff_alerts()) == 1


def test_sandbox_held_payment_is_refunded_from_admin_by_staff_who_may_change(
    client, sandbox_payment, staff
):
    _sandbox_pays(sandbox_payment, amount=TOTAL, currency="INR")
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_payment"))
    action = {"action": "refund_held", "_selected_action": [sandbox_payment.pk]}
    client.force_login(viewer)
    client.post("/admin/payments/payment/", action)
    sandbox_payment.refresh_from_db()
    assert sandbox_payment.status == PaymentStatus.HELD

    client.force_login(staff)
    client.post("/admin/payments/payment/", action)
    sandbox_payment.refresh_from_db()
    invoice = sandbox_payment.invoice
    invoice.refresh_from_db()
    assert sandbox_payment.status == PaymentStatus.REFUNDED
    assert sandbox_payment.amount_refunded == TOTAL
    assert (invoice.status, invoice.amount_paid, invoice.amount_refunded) == (
        InvoiceStatus.OPEN,
        Decimal("0.00"),
        Decimal("0.00"),
    )


def test_the_return_page_shows_what_is_still_due_after_a_short_payment(
    client, owner, sandbox_payment
):
    _sandbox_pays(sandbox_payment, times=1, amount=Decimal("1.00"))
    client.force_login(owner)
    page = client.get(f"/invoices/{sandbox_payment.invoice.number}/pay/done/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "118.00 EUR of this invoice is still due" in body
    assert "Payment processing" not in body and 'http-equiv="refresh"' not in body
