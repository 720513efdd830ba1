# ruff: noqa: F811 - the fixtures are imported from the neighbouring module
"""SEPA Direct Debit / ACH through Stripe's events: processing first, the outcome days later,
a returned debit afterwards; every event delivered twice and shuffled."""

import pytest
from django.urls import reverse

from billing.invoices.models import InvoiceStatus
from billing.payments.models import PaymentStatus
from core.money import to_minor_units
from tests.billing.payments.test_webhooks_stripe import (  # noqa: F401 (fixtures)
    _all_ok,
    _intent,
    _session,
    _stripe,
    checkout_payment,
    invoice,
)
from tests.fixtures.stripe.helpers import deliver_twice_shuffled, event, load, post_event

pytestmark = pytest.mark.django_db


def _processing(payment):
    return _intent(payment, status="processing", amount_received=0)


def test_processing_is_shown_and_stops_pay_online(client, owner, checkout_payment):
    responses = [
        post_event(client, event("payment_intent.processing", _processing(checkout_payment)))
        for _ in range(2)
    ]
    _all_ok(responses)
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.PROCESSING
    invoice = checkout_payment.invoice
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0

    client.force_login(owner)
    page = client.get(reverse("invoices:invoice-detail", args=[invoice.ref])).content.decode()
    assert "Payment processing" in page
    assert "Pay online</button>" not in page
    listing = client.get(reverse("invoices:invoice-list")).content.decode()
    assert 'badge--processing">Payment processing' in listing


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_processing_then_succeeded_in_any_order_pays_once(client, checkout_payment, seed):
    events = [
        event("checkout.session.completed", _session(checkout_payment, payment_status="unpaid")),
        event("payment_intent.processing", _processing(checkout_payment)),
        event("payment_intent.succeeded", _intent(checkout_payment)),
        event("checkout.session.async_payment_succeeded", _session(checkout_payment)),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.SUCCEEDED
    invoice = checkout_payment.invoice
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_processing_then_failed_in_any_order_leaves_it_open(client, checkout_payment, seed):
    failed = _intent(
        checkout_payment,
        status="requires_payment_method",
        amount_received=0,
        last_payment_error={"code": "payment_method_not_available", "message": "Debit returned."},
    )
    events = [
        event("checkout.session.completed", _session(checkout_payment, payment_status="unpaid")),
        event("payment_intent.processing", _processing(checkout_payment)),
        event("payment_intent.payment_failed", failed),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    checkout_payment.refresh_from_db()
    assert checkout_payment.status == PaymentStatus.FAILED
    invoice = checkout_payment.invoice
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("status", ["lost", "needs_response"])
def test_a_returned_debit_is_handled_like_a_lost_dispute(client, checkout_payment, seed, status):
    """SEPA chargeback: the dispute cannot be contested (debit_not_authorized), whatever
    status the dispute object names."""
    dispute = load(
        "dispute",
        id="dp_test_sepa",
        amount=to_minor_units(checkout_payment.amount),
        charge=f"ch_test_{checkout_payment.pk}",
        payment_intent=f"pi_test_{checkout_payment.pk}",
        currency="eur",
        reason="debit_not_authorized",
        status=status,
    )
    events = [
        event("payment_intent.processing", _processing(checkout_payment)),
        event("payment_intent.succeeded", _intent(checkout_payment)),
        event("charge.dispute.created", dispute),
    ]
    _all_ok(deliver_twice_shuffled(client, events, seed=seed))
    checkout_payment.refresh_from_db()
    assert checkout_payment.dispute_status == "lost"
    assert checkout_payment.amount_refunded == checkout_payment.amount
    assert checkout_payment.refunds.count() == 1
    assert checkout_payment.invoice.status == InvoiceStatus.REFUND
