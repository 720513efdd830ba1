"""Queuing Celery tasks so that a broker outage never fails the caller."""

import logging

from celery import Task
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)


def enqueue(task: Task, *args, countdown: float | None = None) -> bool:
    """Queue `task` now; if the broker is down, log it and return False.

    Every piece of work queued here is also found by a periodic job's query, so a
    message that could not be sent is done by the next beat tick instead of lost,
    and the web request that triggered it still succeeds.
    """
    try:
        if countdown is None:
            task.delay(*args)
        else:
            task.apply_async(args, countdown=countdown)
    except (BrokerError, OSError) as exc:
        logger.warning(
            "could not queue %s%r (%s); the next beat tick picks it up", task.name, args, exc
        )
        return False
    return True


def enqueue_on_commit(task: Task, *args) -> None:
    transaction.on_commit(lambda: enqueue(task, *args))
