"""Queuing Celery tasks so that a broker outage never fails the caller.

Work that many small transactions of one batch register after commit (a webhook batch
applies dozens of events, each queuing a PDF render and a receipt) can be gathered with
`after_commit_batch()`: inside it, `enqueue_on_commit` and `on_commit_collected` collect
what committed, and at its end each kind of follow-up is handed over once (one message
per task for the whole batch, see `core.run_tasks`). Outside one, each call behaves as it
always did: its own callback on commit.
"""

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator

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


class _Batch:
    """What committed inside one after_commit_batch(), by kind, in order."""

    def __init__(self) -> None:
        self.kinds: dict[str, tuple[Callable[[list], None], list]] = {}

    def add(self, key: str, item, flush: Callable[[list], None]) -> None:
        self.kinds.setdefault(key, (flush, []))[1].append(item)

    def flush(self) -> None:
        for key, (flush, items) in self.kinds.items():
            try:
                flush(items)
            except Exception:
                # The work has committed; whatever is lost here is found by its sweep.
                logger.exception("after-commit follow-up %s failed for %d items", key, len(items))
        self.kinds.clear()


_batch: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("queue_batch", default=None)


@contextlib.contextmanager
def after_commit_batch() -> Iterator[None]:
    """Gather the follow-ups of the transactions inside (they run when they commit, as
    before; a rolled-back one registers nothing) and hand them over once at the end."""
    if _batch.get() is not None:  # an outer batch hands them over
        yield
        return
    batch = _Batch()
    token = _batch.set(batch)
    try:
        yield
    finally:
        _batch.reset(token)
        batch.flush()


def on_commit_collected(key: str, item, flush: Callable[[list], None]) -> None:
    """After commit, `flush([item])`; inside after_commit_batch() one `flush(items)` for
    every item of the batch that committed, at the batch's end."""

    def committed() -> None:
        batch = _batch.get()
        if batch is None:
            flush([item])
        else:
            batch.add(key, item, flush)

    transaction.on_commit(committed)


def _publish(task: Task, calls: list[tuple]) -> None:
    if len(calls) == 1:
        enqueue(task, *calls[0])
        return
    from core.tasks import run_tasks

    enqueue(run_tasks, [[task.name, list(args)] for args in calls])


def enqueue_on_commit(task: Task, *args) -> None:
    """Queue `task` once the current transaction commits (never if it rolls back); inside
    after_commit_batch() all calls of one task go in one message at the batch's end."""
    on_commit_collected(f"task:{task.name}", args, lambda calls: _publish(task, calls))
