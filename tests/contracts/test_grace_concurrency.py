"""Races on PostgreSQL: two enforcement runs; enforcement against a payment."""

import datetime

import pytest
import time_machine
from django.core import mail
from django.db import connection

from billing import services as billing
from billing.models import Invoice, InvoiceStatus, PaymentKind
from contracts import grace
from contracts.models import AuditEntry, ContractStatus, LeaseContract
from tests.factories import make_contract, make_invoice
from tests.threads import run_together

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL"),
]

DEADLINE = datetime.date(2026, 1, 22)


def _run_in_threads(*targets):
    results, errors = run_together(*targets)
    assert errors == []
    return results


def test_two_enforcement_runs_cancel_each_contract_once(customer):
    invoices = [make_invoice(make_contract(customer)) for _ in range(5)]
    mail.outbox.clear()
    with time_machine.travel(datetime.datetime(2026, 1, 22, 1), tick=False):
        results = _run_in_threads(
            lambda: len(grace.grace_enforce().cancelled),
            lambda: len(grace.grace_enforce().cancelled),
        )
    assert sum(results) == 5
    ids = [inv.contract_id for inv in invoices]
    assert set(LeaseContract.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        ContractStatus.CANCELLED
    }
    for contract_id in ids:
        assert (
            AuditEntry.objects.filter(object_id=str(contract_id), action="contract.cancelled")
            .filter(content_type__model="leasecontract")
            .count()
            == 1
        )
    assert len(mail.outbox) == 5
    assert len({m.subject for m in mail.outbox}) == 5


@pytest.mark.parametrize("round_", range(4))
def test_enforcement_racing_a_payment_has_one_consistent_outcome(customer, settings, round_):
    settings.ADMINS = [("Staff", "staff@example.com")]
    invoice = make_invoice(make_contract(customer))
    payment = billing.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    mail.outbox.clear()
    with time_machine.travel(datetime.datetime(2026, 1, 22, 1), tick=False):
        cancelled, _ = _run_in_threads(
            lambda: grace.contract_enforce_grace(contract_id=invoice.contract_id),
            lambda: billing.payment_record_success(payment_id=payment.pk, actor="webhook"),
        )
    invoice = Invoice.objects.select_related("contract").get(pk=invoice.pk)
    assert invoice.status == InvoiceStatus.PAID
    staff_alerts = [m for m in mail.outbox if m.to == ["staff@example.com"]]
    receipts = [m for m in mail.outbox if m.subject.startswith("Receipt")]
    assert len(receipts) == 1
    if cancelled:
        assert invoice.contract.status == ContractStatus.CANCELLED
        assert len(staff_alerts) == 1
        assert AuditEntry.objects.filter(action="notification.paid_after_cancellation").count() == 1
    else:
        assert invoice.contract.status == ContractStatus.ACTIVE
        assert staff_alerts == []
