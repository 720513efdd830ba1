# ruff: noqa: F811 - the fixtures are imported from the neighbouring module
"""A bank debit processing through the billing calendar: nothing charges, reminds, marks past
due or cancels for its invoice; a debit that fails days later re-opens collection with a
fresh, announced grace window, after which the contract is cancelled as usual."""

import datetime

import pytest
import time_machine
from django.core import mail

from billing.invoices.models import InvoiceStatus
from billing.invoices.selectors import invoice_list_rows
from billing.payments import services as payments
from billing.payments.models import Payment, PaymentKind, PaymentStatus
from billing.payments.providers.base import EventKind, ProviderEvent
from contracts.models import ContractStatus
from core.errors import DomainError
from core.models import AuditEntry
from tests.billing.collections.test_reports_calendar import (  # noqa: F401 (fixtures)
    _issue_and_report,
    _subjects,
    billed,
    calendar,
    run,
)

pytestmark = pytest.mark.django_db

SUBMITTED = datetime.datetime(2026, 1, 14, 10, tzinfo=datetime.UTC)  # the day before due


def _debit_processing(run, invoice) -> Payment:
    """The customer pays by SEPA Direct Debit on the checkout page: submitted, not yet paid."""
    with time_machine.travel(SUBMITTED, tick=False):
        payment = payments.payment_create(
            invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
        )
        event = ProviderEvent(kind=EventKind.PAYMENT_PROCESSING, payment_id=payment.pk)
        run(lambda: payments.provider_event_apply(event, actor="webhook"))
        run(lambda: payments.provider_event_apply(event, actor="webhook"))  # delivered twice
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PROCESSING
    return payment


def test_grace_never_cancels_while_the_debit_is_processing(billed, run, calendar):
    owner, contract = billed
    invoice = _issue_and_report(run, contract, owner, report=False)  # the card declined
    _debit_processing(run, invoice)
    mail.outbox.clear()

    # 20 days past the due date, 13 past the cancellation date it would have had.
    calendar(datetime.date(2026, 1, 14), datetime.date(2026, 2, 4))

    contract.refresh_from_db()
    assert contract.status == ContractStatus.ACTIVE and contract.cancelled_at is None
    assert not AuditEntry.objects.filter(
        action__in=["contract.past_due", "contract.grace_enforced", "contract.cancelled"]
    ).exists()
    assert _subjects(invoice) == []  # no overdue reminder, no cancellation warning
    # No retry of the declined card while the debit is under way.
    assert Payment.objects.filter(invoice=invoice, kind=PaymentKind.AUTOMATIC).count() == 1
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0
    (row,) = invoice_list_rows(type(invoice).objects.filter(pk=invoice.pk))
    assert row.payment_processing is True


def test_a_late_failure_gives_a_fresh_announced_window_then_grace_cancels(billed, run, calendar):
    owner, contract = billed
    invoice = _issue_and_report(run, contract, owner, report=False)
    payment = _debit_processing(run, invoice)
    calendar(datetime.date(2026, 1, 14), datetime.date(2026, 2, 4))
    mail.outbox.clear()

    failed_on = datetime.datetime(2026, 2, 5, 9, tzinfo=datetime.UTC)
    failure = ProviderEvent(
        kind=EventKind.PAYMENT_FAILED,
        payment_id=payment.pk,
        failure_code="insufficient_funds",
        failure_message="The bank returned the debit: insufficient funds.",
    )
    late_processing = ProviderEvent(
        kind=EventKind.PAYMENT_PROCESSING,
        payment_id=payment.pk,
        extra={"created": int(SUBMITTED.timestamp())},
    )
    with time_machine.travel(failed_on, tick=False):
        for event in (failure, late_processing, failure):  # twice, and out of order
            run(lambda event=event: payments.provider_event_apply(event, actor="webhook"))
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    new_deadline = datetime.date(2026, 2, 12)  # GRACE_PERIOD_DAYS (7) from the failure
    contract.refresh_from_db()
    assert contract.grace_extended_until == new_deadline
    assert AuditEntry.objects.filter(action="contract.grace_extended").count() == 1
    (notice,) = [m for m in mail.outbox if "failed" in m.subject]
    assert f"Payment for invoice {invoice.number} failed" == notice.subject
    assert "insufficient funds" in notice.body
    assert f"contract {contract.reference} will be cancelled on 12 February 2026" in notice.body

    calendar(datetime.date(2026, 2, 5), datetime.date(2026, 2, 11))
    contract.refresh_from_db()
    assert contract.status == ContractStatus.PAST_DUE  # reminded and past due, not cancelled
    assert f"Invoice {invoice.number} is overdue" in _subjects(invoice)
    calendar(datetime.date(2026, 2, 12), datetime.date(2026, 2, 12))
    contract.refresh_from_db()
    assert contract.status == ContractStatus.CANCELLED
    assert contract.cancelled_at.date() == new_deadline


def test_no_second_charge_starts_while_a_debit_is_processing(billed, run):
    owner, contract = billed
    invoice = _issue_and_report(run, contract, owner, report=False)
    _debit_processing(run, invoice)
    assert payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="t") is None
    with pytest.raises(DomainError) as exc:
        payments.checkout_start(
            invoice_id=invoice.pk,
            actor="t",
            success_url="https://portal.example/ok",
            cancel_url="https://portal.example/no",
        )
    assert exc.value.code == "payment_processing"
    assert Payment.objects.filter(invoice=invoice).count() == 2  # the declined card, the debit


def test_a_late_failure_after_another_payment_settled_never_double_credits(billed, run):
    owner, contract = billed
    invoice = _issue_and_report(run, contract, owner, report=False)
    debit = _debit_processing(run, invoice)
    # Staff record a bank transfer the customer also made: the invoice is paid.
    with time_machine.travel(SUBMITTED + datetime.timedelta(days=2), tick=False):
        run(lambda: payments.invoice_record_out_of_band_payment(invoice_id=invoice.pk, actor="s"))
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
    mail.outbox.clear()
    failure = ProviderEvent(
        kind=EventKind.PAYMENT_FAILED, payment_id=debit.pk, failure_code="debit_failed"
    )
    late_processing = ProviderEvent(
        kind=EventKind.PAYMENT_PROCESSING,
        payment_id=debit.pk,
        extra={"created": int(SUBMITTED.timestamp())},
    )
    with time_machine.travel(SUBMITTED + datetime.timedelta(days=6), tick=False):
        for event in (failure, late_processing, failure):
            run(lambda event=event: payments.provider_event_apply(event, actor="webhook"))
    debit.refresh_from_db()
    assert debit.status == PaymentStatus.FAILED
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
    contract.refresh_from_db()
    assert contract.grace_extended_until is None  # nothing owed: no window to give
    assert [m for m in mail.outbox if "failed" in m.subject] == []  # nothing to tell

    # Should the bank collect after all, the money is handed back, never credited twice.
    success = ProviderEvent(
        kind=EventKind.PAYMENT_SUCCEEDED,
        payment_id=debit.pk,
        amount_received=debit.amount,
        currency=debit.currency,
    )
    with time_machine.travel(SUBMITTED + datetime.timedelta(days=7), tick=False):
        for _ in range(2):
            run(lambda: payments.provider_event_apply(success, actor="webhook"))
    debit.refresh_from_db()
    assert debit.status == PaymentStatus.SUCCEEDED and debit.is_duplicate
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
