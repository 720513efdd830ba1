"""Tasks through a real Celery worker on the Redis broker (database 5)."""

import datetime
import os

import pytest
import redis
import time_machine
from celery import Celery
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core import mail

from billing.collections.tasks import enforce_grace_period
from config.celery import app
from contracts.models import ContractStatus, LeaseContract
from core import queue as tasks
from tests.factories import make_contract, make_invoice

BROKER = settings.CELERY_BROKER_URL


def _redis_up() -> bool:
    try:
        return redis.Redis.from_url(BROKER, socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def worker():
    # A queue of this process alone: another test run on the same Redis never takes (or
    # hands us) a message meant for a different test database.
    queue = f"test-{os.getpid()}"
    app.conf.update(
        task_always_eager=False,
        broker_url=BROKER,
        result_backend=BROKER,
        task_ignore_result=False,
        task_default_queue=queue,
    )
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", queues=[queue]
        ):
            yield app
    finally:
        app.conf.update(
            task_always_eager=True,
            result_backend=None,
            task_ignore_result=True,
            task_default_queue="celery",
        )


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    not _redis_up() and not os.environ.get("CI"), reason="Redis is not running"
)  # in CI Redis is started by make test: a missing one fails instead of skipping
def test_enforcement_runs_twice_through_a_real_worker(worker, customer):
    invoice = make_invoice(make_contract(customer))
    mail.outbox.clear()
    with time_machine.travel(datetime.datetime(2026, 1, 22, 1), tick=True):
        first = enforce_grace_period.apply_async(ignore_result=False).get(timeout=30)
        second = enforce_grace_period.apply_async(ignore_result=False).get(timeout=30)
    assert (first, second) == (1, 0)
    contract = LeaseContract.objects.get(pk=invoice.contract_id)
    assert contract.status == ContractStatus.CANCELLED


def test_enqueue_with_redis_unreachable_returns_quickly_and_logs(caplog):
    dead = Celery("dead", broker="redis://127.0.0.1:1/0")
    dead.conf.update(
        task_publish_retry_policy=settings.CELERY_TASK_PUBLISH_RETRY_POLICY,
        broker_transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        broker_connection_retry=False,
        broker_connection_max_retries=0,
    )

    @dead.task(name="dead.noop")
    def noop(x):
        return x

    assert tasks.enqueue(noop, 1) is False
    assert "next beat tick" in caplog.text
