"""test_webhooks_stripe's twice-and-shuffled tests again, with the events applied by workers'
batches: the endpoint only stores them and webhook_events_apply_waiting applies what waits
in batches of three, at random points and at the end (tests.fixtures.stripe.helpers.
BATCHED_APPLY), so batches mix events of one payment, out-of-order ones wait and are
replayed after a batch, and some redeliveries arrive after their event was applied."""

import pytest

from tests.billing.payments.test_webhooks_stripe import (
    _stripe,
    checkout_payment,
    invoice,
    test_a_delayed_payment_method_that_fails_keeps_the_invoice_open,
    test_a_delayed_payment_method_that_succeeds_later_pays_once,
    test_checkout_completed_and_intent_succeeded_pay_once,
    test_decline_keeps_the_invoice_open_with_the_reason,
    test_expired_session_cancels_the_attempt,
    test_failure_and_success_in_any_order_end_paid,
    test_full_refund_moves_the_invoice_to_refund,
    test_lost_dispute_moves_the_invoice_to_refund,
    test_partial_refunds_keep_paid_and_show_the_amount,
    test_payment_method_attach_update_detach_in_any_order,
    test_payment_method_attached_is_saved_as_default,
    test_requires_action_is_recorded,
    test_unknown_event_type_is_ignored,
    test_unknown_invoice_is_logged_for_staff_and_answered_200,
    test_won_dispute_keeps_paid,
)
from tests.fixtures.stripe import helpers

__all__ = [
    "_stripe",
    "checkout_payment",
    "invoice",
    "test_a_delayed_payment_method_that_fails_keeps_the_invoice_open",
    "test_a_delayed_payment_method_that_succeeds_later_pays_once",
    "test_checkout_completed_and_intent_succeeded_pay_once",
    "test_decline_keeps_the_invoice_open_with_the_reason",
    "test_expired_session_cancels_the_attempt",
    "test_failure_and_success_in_any_order_end_paid",
    "test_full_refund_moves_the_invoice_to_refund",
    "test_lost_dispute_moves_the_invoice_to_refund",
    "test_partial_refunds_keep_paid_and_show_the_amount",
    "test_payment_method_attach_update_detach_in_any_order",
    "test_payment_method_attached_is_saved_as_default",
    "test_requires_action_is_recorded",
    "test_unknown_event_type_is_ignored",
    "test_unknown_invoice_is_logged_for_staff_and_answered_200",
    "test_won_dispute_keeps_paid",
]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _batched(monkeypatch):
    monkeypatch.setattr(helpers, "BATCHED_APPLY", 3)
