"""An invoice under review through the whole billing calendar (the beat tasks, hour by
hour, 30 days on), and collection resuming after staff reject the report."""

import datetime

import pytest
import time_machine
from django.core import mail

from billing.collections import services, tasks
from billing.collections.models import ReportReason, ReportStatus
from billing.invoices import tasks as invoice_tasks
from billing.invoices.models import InvoiceStatus
from billing.payments import tasks as payment_tasks
from billing.payments.models import Payment, PaymentKind, PaymentStatus
from contracts.models import ContractStatus, Role
from core.models import AuditEntry
from tests.factories import MembershipFactory, PaymentMethodFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db

ISSUED = datetime.date(2026, 1, 1)  # due 15 January, cancelled 22 January if unpaid
# (hour, minute, task) as config/celery.py schedules them.
BEAT = [
    (0, 5, invoice_tasks.run_billing),
    (0, 10, payment_tasks.release_stale_payment_actions),
    (0, 20, tasks.retry_failed_charges),
    (0, 30, tasks.mark_past_due),
    (0, 35, tasks.enforce_grace_period),
    (0, 45, tasks.send_reminders),
    (3, 15, payment_tasks.reconcile_payments),
    (12, 20, tasks.retry_failed_charges),
    (12, 45, tasks.send_reminders),
]


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Run `job` and every task it queues after commit (and what those queue)."""

    def run(job):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            result = job()
        while callbacks:
            with django_capture_on_commit_callbacks(execute=True) as callbacks:
                pass
        return result

    return run


@pytest.fixture
def calendar(run):
    def days(first: datetime.date, last: datetime.date) -> None:
        day = first
        while day <= last:
            for hour, minute, task in BEAT:
                moment = datetime.datetime.combine(day, datetime.time(hour, minute))
                with time_machine.travel(moment.replace(tzinfo=datetime.UTC), tick=False):
                    run(task)
            day += datetime.timedelta(days=1)

    return days


@pytest.fixture
def billed(customer):
    """A contract whose customer has a default card that declines (so every automatic
    attempt leaves a Payment row) and a billing contact for the e-mails."""
    owner = MembershipFactory(customer=customer, role=Role.OWNER, user__email="owner@example.com")
    PaymentMethodFactory(customer=customer, last4="0002")
    return owner, make_contract(customer)


def _issue_and_report(run, contract, owner, *, report: bool):
    """Issue the first invoice; report it before its automatic charge (queued on commit) runs."""
    with time_machine.travel(datetime.datetime(2026, 1, 1, 9, tzinfo=datetime.UTC), tick=False):

        def issue():
            invoice = make_invoice(contract)
            if report:
                services.invoice_report_open(
                    invoice_id=invoice.pk,
                    reason=ReportReason.WRONG_AMOUNT,
                    description="Billed for two blocks, we lease one.",
                    reported_by=owner.user,
                    actor=owner.user,
                )
            return invoice

        invoice = run(issue)
    assert invoice.issue_date == ISSUED and invoice.due_date == datetime.date(2026, 1, 15)
    return invoice


def _subjects(invoice) -> list[str]:
    """What the customer's billing contacts were sent about the invoice."""
    return [
        m.subject
        for m in mail.outbox
        if invoice.number in m.subject and "owner@example.com" in m.to
    ]


def test_without_a_report_the_calendar_charges_reminds_and_cancels(billed, run, calendar):
    """The control: the same 30 days do everything the report must stop."""
    owner, contract = billed
    invoice = _issue_and_report(run, contract, owner, report=False)
    calendar(datetime.date(2026, 1, 2), datetime.date(2026, 1, 31))
    automatic = Payment.objects.filter(invoice=invoice, kind=PaymentKind.AUTOMATIC)
    assert automatic.count() == 4  # at finalisation, then retries on days 1, 3 and 5
    subjects = _subjects(invoice)
    assert f"Invoice {invoice.number} is overdue" in subjects
    assert any("will be cancelled on" in s for s in subjects)
    contract.refresh_from_db()
    assert contract.status == ContractStatus.CANCELLED
    assert contract.cancelled_at.date() == datetime.date(2026, 1, 22)


def test_an_invoice_under_review_is_never_charged_reminded_marked_past_due_or_enforced(
    billed, run, calendar
):
    owner, contract = billed
    invoice = _issue_and_report(run, contract, owner, report=True)
    calendar(datetime.date(2026, 1, 2), datetime.date(2026, 1, 31))

    assert not Payment.objects.filter(invoice=invoice).exists()
    contract.refresh_from_db()
    assert contract.status == ContractStatus.ACTIVE and contract.cancelled_at is None
    assert not AuditEntry.objects.filter(
        action__in=["contract.past_due", "contract.grace_enforced", "contract.cancelled"]
    ).exists()
    assert _subjects(invoice) == [f"We are reviewing invoice {invoice.number}"]
    (staff_alert,) = [m for m in mail.outbox if "reported by" in m.subject]
    assert "Billed for two blocks" in staff_alert.body
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN


def test_after_a_rejection_collection_resumes_with_a_fresh_window(billed, run, calendar):
    owner, contract = billed
    invoice = _issue_and_report(run, contract, owner, report=True)
    calendar(datetime.date(2026, 1, 2), datetime.date(2026, 1, 31))
    report = invoice.reports.get()
    mail.outbox.clear()

    rejected_on = datetime.datetime(2026, 2, 1, 9, tzinfo=datetime.UTC)
    with time_machine.travel(rejected_on, tick=False):
        run(
            lambda: services.invoice_report_reject(
                report_id=report.pk, message="Two blocks are leased: see C-1.", actor="staff"
            )
        )
    report.refresh_from_db()
    new_deadline = datetime.date(2026, 2, 8)  # 7 days from the rejection
    assert report.status == ReportStatus.REJECTED and report.grace_until == new_deadline
    contract.refresh_from_db()
    assert contract.grace_extended_until == new_deadline
    (notice,) = [m for m in mail.outbox if "the invoice stands" in m.subject]
    assert "8 February 2026" in notice.body and "Two blocks are leased" in notice.body
    assert "/pay/?token=" in notice.body
    assert set(notice.to) == {customer_email(contract), "owner@example.com"}

    # Reminders and past-due marking resume at once; cancellation waits for the new window.
    calendar(datetime.date(2026, 2, 2), datetime.date(2026, 2, 7))
    contract.refresh_from_db()
    assert contract.status == ContractStatus.PAST_DUE
    assert f"Invoice {invoice.number} is overdue" in _subjects(invoice)
    calendar(datetime.date(2026, 2, 8), datetime.date(2026, 2, 8))
    contract.refresh_from_db()
    assert contract.status == ContractStatus.CANCELLED
    assert contract.cancelled_at.date() == new_deadline


def customer_email(contract) -> str:
    return contract.customer.email


def test_a_report_after_a_failed_charge_stops_the_retries(billed, run, calendar):
    owner, contract = billed
    invoice = _issue_and_report(run, contract, owner, report=False)
    assert Payment.objects.get(invoice=invoice).status == PaymentStatus.FAILED
    with time_machine.travel(datetime.datetime(2026, 1, 1, 15, tzinfo=datetime.UTC), tick=False):
        run(
            lambda: services.invoice_report_open(
                invoice_id=invoice.pk,
                reason=ReportReason.OTHER,
                description="We cancelled this block in December.",
                reported_by=owner.user,
                actor=owner.user,
            )
        )
    calendar(datetime.date(2026, 1, 2), datetime.date(2026, 1, 31))
    assert Payment.objects.filter(invoice=invoice).count() == 1
    contract.refresh_from_db()
    assert contract.status == ContractStatus.ACTIVE
