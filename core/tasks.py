"""The one base class of every Celery task: what is retried, how soon, and with what budget.

A task that hits a database outage, a provider that cannot answer (core.errors.TransientError)
or an OS-level error (a mail server, storage, a socket) is retried with exponential back-off
and full jitter, instead of being acknowledged and dropped (tasks are acked late, so only a
raised error, not a swallowed one, gets the work done later). Every task is idempotent, so a
retry after a half-done run finishes the work once.

The back-off is capped below the broker's visibility timeout (config.settings.base,
CELERY_BROKER_TRANSPORT_OPTIONS): a message whose countdown outlived it would be handed to a
second worker while the first still holds it. See docs/operations.md.
"""

import contextlib
import contextvars
import logging
from collections.abc import Iterator

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError, connections

from core.errors import TransientError

logger = logging.getLogger(__name__)

# Seconds. Celery doubles the first delay on every retry up to the cap and then draws the
# actual delay uniformly below it (full jitter), so workers that failed together do not
# come back together.
RETRY_BACKOFF = 15
RETRY_BACKOFF_MAX = 600
# 15 s, 30 s, ... then 10 minutes at most: a dozen tries cover an outage of about an hour.
MAX_RETRIES = 12

RETRIED_ERRORS = (OperationalError, InterfaceError, TransientError, OSError)

_in_task: contextvars.ContextVar[bool] = contextvars.ContextVar("in_task", default=False)


def running_in_task() -> bool:
    """True while a Celery task runs (its provider calls get the longer, worker budget)."""
    return _in_task.get()


@contextlib.contextmanager
def task_context() -> Iterator[None]:
    token = _in_task.set(True)
    try:
        yield
    finally:
        _in_task.reset(token)


def close_broken_connections() -> None:
    """Drop database connections that an outage left unusable, so the retry reconnects.

    Celery's worker does this between tasks; an eager retry (tests) runs inside the same
    call. Never inside a transaction: the caller's atomic block owns its connection.
    """
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


class PortalTask(Task):
    autoretry_for = RETRIED_ERRORS
    retry_backoff = RETRY_BACKOFF
    retry_backoff_max = RETRY_BACKOFF_MAX
    retry_jitter = True
    max_retries = MAX_RETRIES

    def __call__(self, *args, **kwargs):
        with task_context():
            return super().__call__(*args, **kwargs)

    def retry(self, *args, **kwargs):
        close_broken_connections()
        return super().retry(*args, **kwargs)


@shared_task(base=PortalTask, name="core.run_tasks")
def run_tasks(calls: list[list]) -> int:
    """Run a batch's follow-ups ([task name, args], queued by core.queue) one after another.

    Each call is the task's own idempotent body. One that fails is queued again on its own,
    with its own retries, so it neither stops the others nor makes them run twice; only if
    that message cannot be published either does this task raise (and is retried whole,
    which the calls' idempotence allows). Returns how many ran without error.
    """
    from celery import current_app

    from core.queue import enqueue

    done = 0
    for name, args in calls:
        task = current_app.tasks[name]
        try:
            task(*args)
        except Exception:
            logger.warning("batched task %s%r failed; queued on its own", name, args, exc_info=True)
            if not enqueue(task, *args):
                raise
        else:
            done += 1
    return done
