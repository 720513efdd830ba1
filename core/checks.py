"""System checks of settings that only fail under faults (docs/operations.md)."""

from django.conf import settings
from django.core.checks import Error, register

from .tasks import RETRY_BACKOFF_MAX


@register()
def check_celery_timeouts(app_configs, **kwargs) -> list[Error]:
    """The broker's visibility timeout must outlast any task run and any retry countdown:
    a message redelivered while the first worker still runs it, or still waits to retry
    it, is done twice at once."""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    visibility = options.get("visibility_timeout", 3600)
    errors = []
    if visibility <= settings.CELERY_TASK_TIME_LIMIT:
        errors.append(
            Error(
                f"The broker's visibility_timeout ({visibility} s) must exceed "
                f"CELERY_TASK_TIME_LIMIT ({settings.CELERY_TASK_TIME_LIMIT} s).",
                hint="Raise CELERY_VISIBILITY_TIMEOUT or lower CELERY_TASK_TIME_LIMIT.",
                id="core.E001",
            )
        )
    if visibility <= RETRY_BACKOFF_MAX:
        errors.append(
            Error(
                f"The broker's visibility_timeout ({visibility} s) must exceed the longest "
                f"retry countdown ({RETRY_BACKOFF_MAX} s, core.tasks.RETRY_BACKOFF_MAX).",
                hint="Raise CELERY_VISIBILITY_TIMEOUT.",
                id="core.E002",
            )
        )
    return errors
