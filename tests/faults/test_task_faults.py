"""Fault injection in the billing calendar's tasks: a database connection killed mid-task
(pg_terminate_backend on the test's own connection), a provider that says "still working on
it", and the configuration that decides when a lost message comes back."""

import contextlib
import datetime

import psycopg
import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.db import InterfaceError, OperationalError, connection

from billing.collections import services as grace
from billing.collections import tasks as collection_tasks
from billing.collections.selectors import (
    CHARGE_STARTED_WITHIN,
    invoices_missing_an_automatic_charge,
)
from billing.invoices import services as invoice_services
from billing.invoices import tasks as invoice_tasks
from billing.invoices.models import Invoice, InvoiceStatus
from billing.payments import services as payments
from billing.payments import tasks as payment_tasks
from billing.payments.models import Payment, PaymentKind, PaymentStatus
from billing.payments.providers import ProviderUnavailable
from config.celery import app
from contracts.models import ContractStatus, LeaseContract
from core import tasks as core_tasks
from core.db import database_unreachable
from core.errors import DomainError
from tests.factories import PaymentMethodFactory, make_contract, make_invoice

ON_POSTGRES = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="terminates a PostgreSQL backend"
)


def _kill_my_database_connection() -> None:
    pid = connection.connection.info.backend_pid
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname=db["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


@contextlib.contextmanager
def retried_like_a_worker():
    """Eager tasks that retry instead of raising: what a worker does with a retry (minus the
    countdown, which eager mode skips)."""
    # The namespaced name: the app reads its settings from Django's, prefixed CELERY_.
    before = app.conf.task_eager_propagates
    app.conf.CELERY_TASK_EAGER_PROPAGATES = False
    try:
        yield
    finally:
        app.conf.CELERY_TASK_EAGER_PROPAGATES = before


# --- One base class, retries below the visibility timeout ------------------------------


def _our_tasks():
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_every_task_retries_database_provider_and_os_errors_below_the_visibility_timeout():
    tasks = _our_tasks()
    assert len(tasks) >= 14
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    for name, task in tasks.items():
        assert isinstance(task, core_tasks.PortalTask), name
        retried = tuple(task.autoretry_for)
        for error in (OperationalError, InterfaceError, ProviderUnavailable, ConnectionError):
            assert issubclass(error, retried), (name, error)
        assert task.retry_jitter, name
        assert task.retry_backoff and task.retry_backoff_max < visibility, name
        assert task.max_retries >= 8, name
    # A message is redelivered after the visibility timeout: never while it still runs.
    assert visibility > settings.CELERY_TASK_TIME_LIMIT
    assert visibility <= 1800, "a killed worker's message should come back within half an hour"


def test_the_beat_schedule_bills_hourly_and_sweeps_checkout_sessions():
    tasks = _our_tasks()
    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert set(schedule) <= set(tasks)
    billing = schedule["invoices.run_billing"]
    assert billing.hour == set(range(24)) and len(billing.minute) == 1
    assert "payments.expire_stale_checkout_sessions" in schedule
    charges = schedule["collections.retry_failed_charges"]
    # The sweep that resumes stale pending charges runs at least as often as they go stale.
    assert 60 / len(charges.minute) <= CHARGE_STARTED_WITHIN.total_seconds() / 60
    assert app.conf.beat_scheduler == "config.beat:SingleBeatScheduler"


def test_the_system_check_refuses_a_visibility_timeout_below_the_task_budget(settings):
    from core.checks import check_celery_timeouts

    assert check_celery_timeouts(None) == []
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300}
    errors = check_celery_timeouts(None)
    assert [e.id for e in errors] == ["core.E001", "core.E002"]


# --- The billing run and grace enforcement after a lost database -------------------------


@ON_POSTGRES
@pytest.mark.django_db(transaction=True)
def test_a_chunk_that_loses_the_database_is_retried_and_bills_each_contract_once(
    customer, monkeypatch, settings
):
    settings.BILLING_CHUNK_SIZE = 2
    contracts = [make_contract(customer, started_on=datetime.date(2026, 1, 1)) for _ in range(4)]
    real = invoice_services._reserve_invoice_ids
    calls: list[int] = []

    def lose_the_database_in_the_first_chunk(count):
        calls.append(count)
        if len(calls) == 1:
            _kill_my_database_connection()
        return real(count)

    monkeypatch.setattr(
        invoice_services, "_reserve_invoice_ids", lose_the_database_in_the_first_chunk
    )
    with (
        time_machine.travel(datetime.datetime(2026, 1, 1, 9, tzinfo=datetime.UTC)),
        retried_like_a_worker(),
    ):
        result = invoice_tasks.run_billing.apply()
    assert result.successful(), result.traceback
    assert result.result == 4, "four contracts queued in two chunks"
    # The first chunk failed and was retried (PortalTask), then the second ran.
    assert calls == [2, 2, 2]
    for contract in contracts:
        assert contract.invoices.count() == 1
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 5)], "no gap, no repeat"


@ON_POSTGRES
@pytest.mark.django_db(transaction=True)
def test_billing_run_raises_a_lost_connection_instead_of_reporting_every_contract(
    customer, monkeypatch, settings
):
    settings.BILLING_CHUNK_SIZE = 1
    [make_contract(customer, started_on=datetime.date(2026, 1, 1)) for _ in range(3)]
    real = invoice_services._reserve_invoice_ids
    seen: list[int] = []

    def lose(count):
        seen.append(count)
        _kill_my_database_connection()
        return real(count)

    monkeypatch.setattr(invoice_services, "_reserve_invoice_ids", lose)
    with pytest.raises((OperationalError, InterfaceError)) as raised:
        invoice_services.billing_run(today=datetime.date(2026, 1, 1))
    assert database_unreachable(raised.value)
    assert seen == [1], "stopped at the first chunk, not retried one contract at a time"
    connection.close()
    assert not Invoice.objects.exists()


@ON_POSTGRES
@pytest.mark.django_db(transaction=True)
def test_grace_enforcement_goes_past_one_contract_error_and_stops_at_a_lost_database(
    customer, monkeypatch
):
    invoices = [make_invoice(make_contract(customer)) for _ in range(3)]
    first, second, third = (inv.contract_id for inv in invoices)
    real = grace.contract_enforce_grace

    def refuse_the_first(*, contract_id, **kw):
        if contract_id == first:
            raise DomainError("Contract is being edited by staff.")
        return real(contract_id=contract_id, **kw)

    monkeypatch.setattr(grace, "contract_enforce_grace", refuse_the_first)
    with time_machine.travel(datetime.datetime(2026, 1, 22, 1, tzinfo=datetime.UTC), tick=False):
        result = grace.grace_enforce()
    assert [c.pk for c in result.cancelled] == [second, third]
    assert result.errors == {first: "Contract is being edited by staff."}

    # A lost connection is not one contract's problem: it stops the sweep, the task retries.
    more = [make_invoice(make_contract(customer)).contract_id for _ in range(2)]
    attempts: list[int] = []

    def lose_once(*, contract_id, **kw):
        attempts.append(contract_id)
        if len(attempts) == 1:
            _kill_my_database_connection()
        return real(contract_id=contract_id, **kw)

    monkeypatch.setattr(grace, "contract_enforce_grace", lose_once)
    mail.outbox.clear()
    with (
        time_machine.travel(datetime.datetime(2026, 1, 22, 2, tzinfo=datetime.UTC), tick=False),
        retried_like_a_worker(),
    ):
        outcome = collection_tasks.enforce_grace_period.apply()
    assert outcome.successful(), outcome.traceback
    assert attempts == [first, first, *more], "stopped at the lost one, retried from there"
    assert set(LeaseContract.objects.values_list("status", flat=True)) == {ContractStatus.CANCELLED}


# --- Pay online sessions left open, and stale pending charges ------------------------------


@pytest.mark.django_db
def test_the_sweep_expires_sessions_of_void_invoices_and_cancelled_contracts(customer):
    voided = make_invoice(make_contract(customer))
    cancelled = make_invoice(make_contract(customer))
    open_ = make_invoice(make_contract(customer))
    for invoice in (voided, cancelled, open_):
        payments.checkout_start(
            invoice_id=invoice.pk, actor="t", success_url="https://s", cancel_url="https://c"
        )
    # What the queued expire_checkout_sessions would have done, had its message arrived.
    invoice_services.invoice_void(invoice_id=voided.pk, actor="t")
    LeaseContract.objects.filter(pk=cancelled.contract_id).update(status=ContractStatus.CANCELLED)

    assert payment_tasks.expire_stale_checkout_sessions() == 2
    statuses = dict(Payment.objects.values_list("invoice_id", "status"))
    assert statuses == {
        voided.pk: PaymentStatus.CANCELLED,
        cancelled.pk: PaymentStatus.CANCELLED,
        open_.pk: PaymentStatus.PENDING,
    }
    assert payment_tasks.expire_stale_checkout_sessions() == 0


@pytest.mark.django_db
def test_a_stale_pending_charge_is_resumed_after_fifteen_minutes(customer):
    PaymentMethodFactory(customer=customer, is_default=True)
    start = datetime.datetime(2026, 1, 1, 9, tzinfo=datetime.UTC)
    with time_machine.travel(start, tick=False):
        invoice = make_invoice(make_contract(customer))
        payments.payment_create(
            invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
        )
    with time_machine.travel(start + datetime.timedelta(minutes=14), tick=False):
        assert invoices_missing_an_automatic_charge(now=datetime.datetime.now(datetime.UTC)) == []
    with time_machine.travel(start + datetime.timedelta(minutes=16), tick=False):
        due = invoices_missing_an_automatic_charge(now=datetime.datetime.now(datetime.UTC))
        assert due == [invoice.pk]
        assert collection_tasks.retry_failed_charges() == 1
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.payments.get().status == PaymentStatus.SUCCEEDED
