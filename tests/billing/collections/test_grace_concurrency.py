"""Races on PostgreSQL: two enforcement runs; enforcement against a payment or a charge."""

import datetime
import threading

import pytest
import time_machine
from django.core import mail
from django.db import connection

from billing.collections import services as grace
from billing.invoices.models import Invoice, InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import Payment, PaymentKind, PaymentStatus
from billing.payments.providers import sandbox
from contracts.models import ContractStatus, LeaseContract
from core.errors import DomainError
from core.models import AuditEntry
from tests.factories import PaymentMethodFactory, make_contract, make_invoice
from tests.threads import Pause, run_together, wait_until_blocked_on_lock

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
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    mail.outbox.clear()
    with time_machine.travel(datetime.datetime(2026, 1, 22, 1), tick=False):
        cancelled, _ = _run_in_threads(
            lambda: grace.contract_enforce_grace(contract_id=invoice.contract_id),
            lambda: payments.payment_record_success(payment_id=payment.pk, actor="webhook"),
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


# --- Enforcement against a charge, each order forced -----------------------------------


def _provider_calls(monkeypatch, gate: threading.Event | None = None) -> list[str]:
    """Record every call that would reach the provider; `gate` holds a charge back."""
    calls: list[str] = []
    real_charge = sandbox.SandboxProvider.charge_saved_method
    real_checkout = sandbox.SandboxProvider.checkout_create

    def charge(self, **kw):
        calls.append("charge")
        if gate is not None:
            assert gate.wait(10)
        return real_charge(self, **kw)

    def checkout(self, **kw):
        calls.append("checkout")
        return real_checkout(self, **kw)

    monkeypatch.setattr(sandbox.SandboxProvider, "charge_saved_method", charge)
    monkeypatch.setattr(sandbox.SandboxProvider, "checkout_create", checkout)
    return calls


PAYERS = {
    "automatic": lambda invoice, card: payments.invoice_charge_automatically(
        invoice_id=invoice.pk, actor="billing run"
    ),
    "api": lambda invoice, card: payments.invoice_pay_with_saved_method(
        invoice_id=invoice.pk, payment_method_id=card.provider_id, off_session=True, actor="api"
    ),
    "checkout": lambda invoice, card: payments.checkout_start(
        invoice_id=invoice.pk,
        actor="pay link",
        success_url="https://portal.example/ok",
        cancel_url="https://portal.example/cancel",
    ),
}


@pytest.mark.parametrize("payer", sorted(PAYERS))
def test_a_charge_that_waited_behind_enforcement_is_refused(customer, monkeypatch, payer):
    """Enforcement cancels and holds the invoice lock; the charge queues on it, then must
    see the cancelled contract (not the live one its locking statement read) and stop."""
    invoice = make_invoice(make_contract(customer))
    card = PaymentMethodFactory(customer=customer, is_default=True)
    calls = _provider_calls(monkeypatch)
    cancelled = Pause()
    monkeypatch.setattr(grace, "contract_cancel", cancelled.wrap(grace.contract_cancel))

    def enforce():
        return grace.contract_enforce_grace(contract_id=invoice.contract_id)

    def pay():
        assert cancelled.reached.wait(10)
        try:
            return PAYERS[payer](invoice, card)
        except DomainError as exc:
            return exc.code

    def conduct():
        assert cancelled.reached.wait(10)
        wait_until_blocked_on_lock()
        cancelled.go.set()

    with time_machine.travel(datetime.datetime(2026, 1, 22, 1), tick=False):
        (enforced, paid, _), errors = run_together(enforce, pay, conduct)
    assert errors == []
    assert enforced is True
    assert paid in (None, "invoice_not_payable")
    assert calls == []
    assert not Payment.objects.filter(invoice=invoice).exists()
    invoice = Invoice.objects.select_related("contract").get(pk=invoice.pk)
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.contract.status == ContractStatus.CANCELLED


def test_a_charge_holding_the_lock_with_its_success_keeps_the_contract(
    customer, monkeypatch, settings
):
    """The charge records its success while enforcement waits: enforcement then finds
    nothing unpaid and cancels nothing."""
    settings.ADMINS = [("Staff", "staff@example.com")]
    invoice = make_invoice(make_contract(customer))
    PaymentMethodFactory(customer=customer, is_default=True)
    calls = _provider_calls(monkeypatch)
    succeeded = Pause()
    monkeypatch.setattr(
        payments,
        "payment_set_status",
        succeeded.wrap(
            payments.payment_set_status,
            when=lambda payment, target, **kw: target == PaymentStatus.SUCCEEDED,
        ),
    )
    mail.outbox.clear()

    def charge():
        return payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="billing run")

    def enforce():
        assert succeeded.reached.wait(10)
        return grace.contract_enforce_grace(contract_id=invoice.contract_id)

    def conduct():
        assert succeeded.reached.wait(10)
        wait_until_blocked_on_lock()
        succeeded.go.set()

    with time_machine.travel(datetime.datetime(2026, 1, 22, 1), tick=False):
        (payment, enforced, _), errors = run_together(charge, enforce, conduct)
    assert errors == []
    assert payment.status == PaymentStatus.SUCCEEDED and not payment.is_duplicate
    assert enforced is False
    assert calls == ["charge"]
    invoice = Invoice.objects.select_related("contract").get(pk=invoice.pk)
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
    assert invoice.contract.status == ContractStatus.ACTIVE
    assert [m for m in mail.outbox if m.to == ["staff@example.com"]] == []


def test_a_charge_started_before_enforcement_lands_after_the_cancellation(
    customer, monkeypatch, settings
):
    """The charge's attempt is decided (contract live) while enforcement waits; enforcement
    then cancels while the card is at the provider. Whichever commits first decides: the
    money settles the overdue invoice, the contract stays cancelled and staff are told."""
    settings.ADMINS = [("Staff", "staff@example.com")]
    invoice = make_invoice(make_contract(customer))
    PaymentMethodFactory(customer=customer, is_default=True)
    enforcement_done = threading.Event()
    calls = _provider_calls(monkeypatch, gate=enforcement_done)
    started = Pause()
    monkeypatch.setattr(payments, "payment_create", started.wrap(payments.payment_create))
    mail.outbox.clear()

    def charge():
        return payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="billing run")

    def enforce():
        assert started.reached.wait(10)
        try:
            return grace.contract_enforce_grace(contract_id=invoice.contract_id)
        finally:
            enforcement_done.set()

    def conduct():
        assert started.reached.wait(10)
        wait_until_blocked_on_lock()
        started.go.set()

    with time_machine.travel(datetime.datetime(2026, 1, 22, 1), tick=False):
        (payment, enforced, _), errors = run_together(charge, enforce, conduct)
    assert errors == []
    assert enforced is True
    assert calls == ["charge"]
    assert payment.status == PaymentStatus.SUCCEEDED and not payment.is_duplicate
    invoice = Invoice.objects.select_related("contract").get(pk=invoice.pk)
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
    assert invoice.contract.status == ContractStatus.CANCELLED
    assert len([m for m in mail.outbox if m.to == ["staff@example.com"]]) == 1
