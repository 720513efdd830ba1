"""test_payment_amounts's twice-and-shuffled tests again, with the events applied by workers'
batches: the endpoint only stores them and webhook_events_apply_waiting applies what waits
in batches of three, at random points and at the end (tests.fixtures.stripe.helpers.
BATCHED_APPLY), so batches mix events of one payment, out-of-order ones wait and are
replayed after a batch, and some redeliveries arrive after their event was applied."""

import pytest

from tests.billing.payments.test_payment_amounts import (
    http,
    stripe_payment,
    stripe_settings,
    test_stripe_held_payment_is_refunded_from_admin,
    test_stripe_other_currency_is_held_for_staff,
    test_stripe_other_customer_is_held_for_staff,
    test_stripe_overpayment_pays_the_total_and_refunds_the_excess,
    test_stripe_short_payment_leaves_the_rest_due,
    test_stripe_success_without_an_amount_is_held,
)
from tests.fixtures.stripe import helpers

__all__ = [
    "http",
    "stripe_payment",
    "stripe_settings",
    "test_stripe_held_payment_is_refunded_from_admin",
    "test_stripe_other_currency_is_held_for_staff",
    "test_stripe_other_customer_is_held_for_staff",
    "test_stripe_overpayment_pays_the_total_and_refunds_the_excess",
    "test_stripe_short_payment_leaves_the_rest_due",
    "test_stripe_success_without_an_amount_is_held",
]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _batched(monkeypatch):
    monkeypatch.setattr(helpers, "BATCHED_APPLY", 3)
