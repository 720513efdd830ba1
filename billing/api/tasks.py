"""Outgoing webhook tasks: each takes ids, calls one function of billing.api.webhooks and
is safe to run twice (a delivery that is not due, or already sent, is left alone)."""

from celery import shared_task

from core.queue import enqueue
from core.tasks import PortalTask

from . import webhooks


@shared_task(base=PortalTask, name="api.deliver_webhook")
def deliver_webhook(delivery_id: int, replay: bool = False) -> None:
    # A receiver that is down is not a task failure: the attempt is logged and the next
    # one scheduled in the database (webhooks.RETRY_SCHEDULE), which the sweep sends.
    webhooks.delivery_attempt(delivery_id=delivery_id, replay=replay)


@shared_task(base=PortalTask, name="api.send_due_webhooks")
def send_due_webhooks() -> int:
    """Minutely: queue every delivery whose next attempt is due (retries, lost messages)."""
    due = webhooks.deliveries_due()
    for delivery_id in due:
        enqueue(deliver_webhook, delivery_id)
    return len(due)


@shared_task(base=PortalTask, name="api.catch_up_webhook_events")
def catch_up_webhook_events() -> int:
    """Events whose after-commit step was lost (see webhooks.events_catch_up)."""
    return webhooks.events_catch_up()


@shared_task(base=PortalTask, name="api.notify_webhook_disabled")
def notify_webhook_disabled(endpoint_id: int) -> None:
    webhooks.endpoint_send_disabled_notice(endpoint_id=endpoint_id)
