"""test_refund_failures's twice-and-shuffled tests again, with the events applied by workers'
batches: the endpoint only stores them and webhook_events_apply_waiting applies what waits
in batches of three, at random points and at the end (tests.fixtures.stripe.helpers.
BATCHED_APPLY), so batches mix events of one payment, out-of-order ones wait and are
replayed after a batch, and some redeliveries arrive after their event was applied."""

import pytest

from tests.billing.payments.test_refund_failures import (
    http,
    paid,
    stripe_settings,
    test_pending_refund_that_fails_is_recorded_and_a_new_one_may_follow,
    test_refund_made_at_stripe_fails_whatever_order_the_events_come_in,
    test_succeeded_refund_that_fails_later_puts_the_money_back,
)
from tests.fixtures.stripe import helpers

__all__ = [
    "http",
    "paid",
    "stripe_settings",
    "test_pending_refund_that_fails_is_recorded_and_a_new_one_may_follow",
    "test_refund_made_at_stripe_fails_whatever_order_the_events_come_in",
    "test_succeeded_refund_that_fails_later_puts_the_money_back",
]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _batched(monkeypatch):
    monkeypatch.setattr(helpers, "BATCHED_APPLY", 3)
