"""The Celery app and the one beat schedule of the billing calendar.

Every periodic job finds its work by query, so a tick that was missed (worker
down, Redis down) is caught up by the next one; nothing depends on a message
having been delivered. Exactly one beat publishes (config.beat); every task is
a core.tasks.PortalTask (retries, back-off). See docs/operations.md.
"""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Hourly although it bills by the day: it is idempotent, so a run lost to an outage
    # (or retried past its budget) costs an hour, not a day.
    "billing-run-hourly": {
        "task": "invoices.run_billing",
        "schedule": crontab(minute=5),
    },
    # Before the charge retries, so an attempt released now is retried in the same hour.
    "payment-actions-release-hourly": {
        "task": "payments.release_stale_payment_actions",
        "schedule": crontab(minute=10),
    },
    # Also the sweep that resumes charges left pending (a worker died, the provider did not
    # answer) once they are older than collections.selectors.CHARGE_STARTED_WITHIN.
    "charge-retries-quarter-hourly": {
        "task": "collections.retry_failed_charges",
        "schedule": crontab(minute="12-59/15"),
    },
    "past-due-marking-hourly": {
        "task": "collections.mark_past_due",
        "schedule": crontab(minute=30),
    },
    "grace-enforcement-hourly": {
        "task": "collections.enforce_grace_period",
        "schedule": crontab(minute=35),
    },
    "reminders-hourly": {
        "task": "collections.send_reminders",
        "schedule": crontab(minute=45),
    },
    # Pay online sessions of invoices that can no longer be paid, which the queued
    # payments.expire_checkout_sessions did not close (its message was lost).
    "checkout-sessions-expire-quarter-hourly": {
        "task": "payments.expire_stale_checkout_sessions",
        "schedule": crontab(minute="7-59/15"),
    },
    # Stripe events are applied by workers as they arrive; this picks up the ones whose
    # message was lost and retries failed ones (webhooks.RETRY_AFTER, MAX_ATTEMPTS).
    "webhook-events-sweep-minutely": {
        "task": "payments.sweep_webhook_events",
        "schedule": crontab(),
    },
    # Customers' outgoing webhooks: attempts that are due (retries, lost messages), and
    # events whose after-commit step was lost (billing.api.webhooks).
    "outgoing-webhooks-send-minutely": {
        "task": "api.send_due_webhooks",
        "schedule": crontab(),
    },
    "outgoing-webhooks-catch-up": {
        "task": "api.catch_up_webhook_events",
        "schedule": crontab(minute="*/10"),
    },
    "vies-recheck-daily": {
        "task": "contracts.vies_recheck",
        "schedule": crontab(minute=50, hour=4),
    },
    "payments-reconcile-nightly": {
        "task": "payments.reconcile_payments",
        "schedule": crontab(minute=15, hour=3),
    },
}
