"""Races on PostgreSQL: two reports at once; a report against grace enforcement."""

import datetime
import threading

import pytest
import time_machine
from django.db import connection

from billing.collections import services
from billing.collections.models import InvoiceReport, ReportReason
from contracts.models import ContractStatus, LeaseContract
from core.errors import DomainError
from tests.factories import make_contract, make_invoice
from tests.threads import Pause, run_together, wait_until_blocked_on_lock

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL"),
]


def _report(invoice_id: int, text: str):
    def job():
        try:
            return services.invoice_report_open(
                invoice_id=invoice_id,
                reason=ReportReason.WRONG_AMOUNT,
                description=text,
                reported_by=None,
                actor="customer",
            ).pk
        except DomainError as exc:
            return exc.code

    return job


def test_two_reports_at_once_make_one(customer, monkeypatch):
    invoice = make_invoice(make_contract(customer))
    pause = Pause()
    # The first report stops after its check, holding the invoice's lock; the second
    # is sent only once the first is there, and must wait for that lock.
    monkeypatch.setattr(
        services,
        "invoice_is_under_review",
        pause.wrap(services.invoice_is_under_review, when=lambda *a: not pause.reached.is_set()),
    )
    second_started = threading.Event()

    def first():
        return _report(invoice.pk, "first")()

    def second():
        assert pause.reached.wait(10)
        second_started.set()
        return _report(invoice.pk, "second")()

    def release():
        assert second_started.wait(10)
        wait_until_blocked_on_lock()
        pause.go.set()

    results, errors = run_together(first, second, release)
    assert errors == []
    assert isinstance(results[0], int) and results[1] == "already_reported"
    assert list(InvoiceReport.objects.values_list("description", flat=True)) == ["first"]


def test_a_report_committed_while_enforcement_waits_for_the_lock_saves_the_contract(
    customer, monkeypatch
):
    invoice = make_invoice(make_contract(customer))
    pause = Pause()
    # The report holds the invoice's lock (paused after its check) while enforcement,
    # which read the invoice as a candidate, waits for that lock.
    monkeypatch.setattr(
        services,
        "invoice_is_under_review",
        pause.wrap(services.invoice_is_under_review),
    )
    moment = datetime.datetime(2026, 1, 25, 9, tzinfo=datetime.UTC)

    def report():
        with time_machine.travel(moment, tick=False):
            return _report(invoice.pk, "wrong")()

    def enforce():
        assert pause.reached.wait(10)
        with time_machine.travel(moment, tick=False):
            return services.contract_enforce_grace(contract_id=invoice.contract_id)

    def release():
        assert pause.reached.wait(10)
        wait_until_blocked_on_lock()
        pause.go.set()

    results, errors = run_together(report, enforce, release)
    assert errors == []
    assert isinstance(results[0], int) and results[1] is False
    contract = LeaseContract.objects.get(pk=invoice.contract_id)
    assert contract.status == ContractStatus.ACTIVE
