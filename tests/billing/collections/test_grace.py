"""Grace enforcement and past-due marking (billing.collections), moved through time."""

import datetime

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command

from billing.collections import selectors as collection_selectors
from billing.collections import services as grace
from billing.collections.tasks import enforce_grace_period, mark_past_due
from billing.invoices.models import InvoiceStatus
from billing.payments import services as billing
from billing.payments.models import PaymentKind
from contracts import services
from contracts.models import (
    BlockStatus,
    CancellationReason,
    ContractStatus,
    LeaseContract,
    ResourceStatus,
)
from core.models import AuditEntry
from tests.factories import MembershipFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db

DUE = datetime.date(2026, 1, 15)  # issued 1 January, 14 days' terms
DEADLINE = datetime.date(2026, 1, 22)  # due + 7 days' grace


@pytest.fixture
def contract(customer):
    MembershipFactory(customer=customer, user__email="owner@example.com")
    contract = make_contract(customer, blocks=2)
    block = contract.blocks.first()
    services.assignment_create(
        contract=contract, block=block, reference="ORG-1", netname="NET", actor="t"
    )
    services.rdns_create(
        contract=contract, block=block, zone="2.0.192.in-addr.arpa", nameservers="ns1", actor="t"
    )
    return contract


@pytest.fixture
def invoice(contract):
    invoice = make_invoice(contract)
    assert invoice.due_date == DUE and invoice.cancellation_date == DEADLINE
    return invoice


def _pay(invoice):
    payment = billing.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.API, actor="t"
    )
    return billing.payment_record_success(payment_id=payment.pk, actor="t")


def _enforce(when, capture):
    moment = datetime.datetime.combine(when, datetime.time(1))
    with time_machine.travel(moment, tick=False), capture(execute=True):
        return enforce_grace_period()


def test_nothing_is_cancelled_before_the_cancellation_date(
    invoice, django_capture_on_commit_callbacks
):
    assert _enforce(DEADLINE - datetime.timedelta(days=1), django_capture_on_commit_callbacks) == 0
    invoice.contract.refresh_from_db()
    assert invoice.contract.status == ContractStatus.ACTIVE


def test_unpaid_invoice_cancels_its_contract_once(invoice, django_capture_on_commit_callbacks):
    contract = invoice.contract
    mail.outbox.clear()
    assert _enforce(DEADLINE, django_capture_on_commit_callbacks) == 1
    assert _enforce(DEADLINE, django_capture_on_commit_callbacks) == 0

    contract.refresh_from_db()
    assert contract.status == ContractStatus.CANCELLED
    assert contract.cancellation_reason == CancellationReason.NON_PAYMENT
    assert contract.cancelled_at.date() == DEADLINE
    assert set(contract.blocks.values_list("status", flat=True)) == {BlockStatus.DEACTIVATED}
    assert {a.status for a in contract.assignment_requests.all()} == {ResourceStatus.REMOVED}
    assert {r.status for r in contract.rdns_delegations.all()} == {ResourceStatus.REMOVED}
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN  # still owed

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert contract.reference in message.subject and "cancelled" in message.subject
    assert set(message.to) == {contract.customer.email, "owner@example.com"}
    assert invoice.number in message.body
    assert message.alternatives[0][1] == "text/html"
    actions = list(
        AuditEntry.objects.filter(object_id=str(contract.pk), action__startswith="contract.")
        .values_list("action", flat=True)
        .order_by("pk")
    )
    assert actions.count("contract.cancelled") == 1
    assert "contract.grace_enforced" in actions


def test_staff_extension_moves_the_deadline(invoice, django_capture_on_commit_callbacks):
    extended = DEADLINE + datetime.timedelta(days=5)
    with time_machine.travel(datetime.datetime(2026, 1, 20, 12), tick=False):
        services.contract_extend_grace(contract_id=invoice.contract_id, until=extended, actor="s")
    invoice.refresh_from_db()
    assert invoice.cancellation_date == extended
    assert _enforce(DEADLINE, django_capture_on_commit_callbacks) == 0
    assert _enforce(extended - datetime.timedelta(days=1), django_capture_on_commit_callbacks) == 0
    assert _enforce(extended, django_capture_on_commit_callbacks) == 1


def test_paid_invoice_cancels_nothing(invoice, django_capture_on_commit_callbacks):
    with time_machine.travel(datetime.datetime(2026, 1, 20, 12), tick=False):
        _pay(invoice)
    assert _enforce(DEADLINE + datetime.timedelta(days=30), django_capture_on_commit_callbacks) == 0
    assert LeaseContract.objects.get(pk=invoice.contract_id).status == ContractStatus.ACTIVE


def test_candidates_respect_grace_and_extension(invoice):
    assert (
        list(collection_selectors.grace_candidates(today=DEADLINE - datetime.timedelta(days=1)))
        == []
    )
    assert list(collection_selectors.grace_candidates(today=DEADLINE)) == [invoice.contract_id]


def test_past_due_while_overdue_inside_grace_then_restored_by_payment(invoice):
    contract = invoice.contract
    with time_machine.travel(datetime.datetime(2026, 1, 15, 12), tick=False):
        assert mark_past_due() == 0  # due today, not overdue yet
    with time_machine.travel(datetime.datetime(2026, 1, 16, 12), tick=False):
        assert mark_past_due() == 1
        assert mark_past_due() == 0
        contract.refresh_from_db()
        assert contract.status == ContractStatus.PAST_DUE
        _pay(invoice)
        contract.refresh_from_db()
        assert contract.status == ContractStatus.ACTIVE
        assert mark_past_due() == 0
    contract.refresh_from_db()
    assert contract.status == ContractStatus.ACTIVE


def test_past_due_rechecks_under_lock(invoice):
    _pay(invoice)
    assert not grace.contract_mark_past_due_if_overdue(
        contract_id=invoice.contract_id, today=datetime.date(2026, 1, 16)
    )


def test_enforce_grace_period_command_dry_run_and_real(invoice, capsys):
    contract = invoice.contract
    with time_machine.travel(datetime.datetime(2026, 1, 22, 9), tick=False):
        call_command("enforce_grace_period", "--dry-run")
        out = capsys.readouterr().out
        assert f"Would cancel {contract.reference}" in out
        contract.refresh_from_db()
        assert contract.status == ContractStatus.ACTIVE

        call_command("enforce_grace_period")
        out = capsys.readouterr().out
        assert f"Cancelled {contract.reference}" in out
        assert "Cancelled 1 contract(s)" in out
        contract.refresh_from_db()
        assert contract.status == ContractStatus.CANCELLED

        call_command("enforce_grace_period")
        assert "Cancelled 0 contract(s)" in capsys.readouterr().out


def test_admin_shows_the_cancellation_date(invoice, staff, client):
    client.force_login(staff)
    listing = client.get("/admin/contracts/leasecontract/")
    assert listing.status_code == 200
    assert "Cancellation date" in listing.content.decode()
    assert "Jan. 22, 2026" in listing.content.decode()
    detail = client.get(f"/admin/contracts/leasecontract/{invoice.contract_id}/change/")
    assert "2026-01-22" in detail.content.decode()


class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs (not an Exception)."""


def test_a_worker_killed_mid_enforcement_cancels_and_mails_each_contract_once(
    customer, django_capture_on_commit_callbacks, monkeypatch
):
    from billing.collections.tasks import send_reminders

    MembershipFactory(customer=customer, user__email="owner@example.com")
    contracts = [make_invoice(make_contract(customer)).contract for _ in range(3)]
    real = grace.contract_enforce_grace
    calls = []

    def die_on_the_second(**kw):
        calls.append(kw["contract_id"])
        if len(calls) == 2:
            raise WorkerKilled
        return real(**kw)

    monkeypatch.setattr(grace, "contract_enforce_grace", die_on_the_second)
    with pytest.raises(WorkerKilled):
        _enforce(DEADLINE, django_capture_on_commit_callbacks)
    monkeypatch.setattr(grace, "contract_enforce_grace", real)

    # The message comes back (acks_late); the hourly sweep sends what the dead run did not.
    assert _enforce(DEADLINE, django_capture_on_commit_callbacks) == 2
    assert _enforce(DEADLINE, django_capture_on_commit_callbacks) == 0
    with time_machine.travel(datetime.datetime.combine(DEADLINE, datetime.time(2)), tick=False):
        send_reminders()
        send_reminders()
    for contract in contracts:
        contract.refresh_from_db()
        assert contract.status == ContractStatus.CANCELLED
        assert (
            AuditEntry.objects.filter(
                action="contract.cancelled", object_id=str(contract.pk)
            ).count()
            == 1
        )
        notices = [
            m for m in mail.outbox if contract.reference in m.subject and "cancelled" in m.subject
        ]
        assert len(notices) == 1, contract.reference
        assert set(contract.blocks.values_list("status", flat=True)) == {BlockStatus.DEACTIVATED}
