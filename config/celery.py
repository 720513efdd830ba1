"""The Celery app and the one beat schedule of the billing calendar.

Every periodic job finds its work by query, so a tick that was missed (worker
down, Redis down) is caught up by the next one; nothing depends on a message
having been delivered.
"""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    "billing-run-daily": {
        "task": "invoices.run_billing",
        "schedule": crontab(minute=5, hour=0),
    },
    # Before the charge retries, so an attempt released now is retried in the same hour.
    "payment-actions-release-hourly": {
        "task": "payments.release_stale_payment_actions",
        "schedule": crontab(minute=10),
    },
    "charge-retries-hourly": {
        "task": "collections.retry_failed_charges",
        "schedule": crontab(minute=20),
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
    "vies-recheck-daily": {
        "task": "contracts.vies_recheck",
        "schedule": crontab(minute=50, hour=4),
    },
    "payments-reconcile-nightly": {
        "task": "payments.reconcile_payments",
        "schedule": crontab(minute=15, hour=3),
    },
}
