"""The dunning calendar: past-due marking, grace cancellation, what to remind and retry.

An Open invoice still unpaid GRACE_PERIOD_DAYS after its due date cancels its
contract on its cancellation date (`Invoice.cancellation_date`: due date + grace, or
the staff extension if later), the date the customer's warnings name.

Every function here finds its work with an indexed query, so each beat tick can run
any number of times, late or twice, and does each thing once.

Lock order is the invoice rows, then the contract row: the same order as
billing.payments.services.payment_record_success (invoice, then contract_restore), so
enforcement racing a payment waits instead of deadlocking, and whichever commits
first decides: paid first -> nothing to cancel; cancelled first -> the payment marks
the invoice Paid, the contract stays cancelled and staff are alerted.
"""

import datetime
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DatabaseError, transaction
from django.utils import timezone

from billing.invoices.models import CreditNote, Invoice, InvoiceStatus, overdue_q
from billing.invoices.services import lock_invoice
from billing.payments.tasks import expire_checkout_sessions
from contracts.models import CancellationReason, ContractStatus, LeaseContract
from contracts.services import contract_cancel, contract_extend_grace, contract_mark_past_due
from core.audit import Actor, audit_record
from core.db import database_unreachable
from core.errors import DomainError, check_transition
from core.queue import enqueue

from .models import (
    REPORT_TRANSITIONS,
    UNRESOLVED_STATUSES,
    InvoiceReport,
    ReportReason,
    ReportStatus,
)
from .selectors import (
    grace_candidates,
    grace_period,
    invoice_is_under_review,
    invoices_under_review,
    invoices_with_payment_processing,
    past_due_candidates,
    paused,
    report_refusal,
)

logger = logging.getLogger(__name__)

GRACE_ACTOR = "grace enforcement"


# --- Grace enforcement ----------------------------------------------------------------


def contract_enforce_grace(
    *, contract_id: int, today: datetime.date | None = None, actor: Actor = GRACE_ACTOR
) -> bool:
    """Cancel the contract for non-payment if, under lock, an invoice is still unpaid past grace.

    An invoice under review (an unresolved InvoiceReport) or with a bank debit processing
    does not count. Returns True
    when this call cancelled it; quietly False when it was paid meanwhile,
    extended, or already cancelled (e.g. by a second worker running at the same time).
    """
    today = today or timezone.localdate()
    with transaction.atomic():
        overdue = list(
            Invoice.objects.select_for_update()
            .filter(
                contract_id=contract_id,
                status=InvoiceStatus.OPEN,
                due_date__lte=today - grace_period(),
            )
            .order_by("pk")
        )
        # Read after the rows are locked, in a statement of its own, so a report that
        # committed while this waited for the lock is seen (report_open locks the invoice).
        ids = [inv.pk for inv in overdue]
        waiting = invoices_under_review(ids) | invoices_with_payment_processing(ids)
        overdue = [inv for inv in overdue if inv.pk not in waiting]
        contract = (
            LeaseContract.objects.select_for_update(of=("self",))
            .select_related("customer")
            .get(pk=contract_id)
        )
        if not overdue or contract.status == ContractStatus.CANCELLED:
            return False
        if contract.grace_extended_until and contract.grace_extended_until > today:
            return False
        contract_cancel(contract_id=contract_id, reason=CancellationReason.NON_PAYMENT, actor=actor)
        audit_record(
            actor=actor,
            action="contract.grace_enforced",
            target=contract,
            customer=contract.customer,
            after={"invoices": [inv.number for inv in overdue], "on": today},
            note=f"Unpaid {settings.GRACE_PERIOD_DAYS} days after the due date.",
        )
        invoice_ids = [inv.pk for inv in overdue]
        transaction.on_commit(lambda: _after_cancellation(contract_id, invoice_ids))
    logger.info("grace: cancelled %s for non-payment", contract.reference)
    return True


def _after_cancellation(contract_id: int, invoice_ids: list[int]) -> None:
    from .tasks import send_cancellation_notice  # tasks imports this module

    enqueue(send_cancellation_notice, contract_id)
    for invoice_id in invoice_ids:
        enqueue(expire_checkout_sessions, invoice_id)


@dataclass
class GraceResult:
    candidates: list[LeaseContract] = field(default_factory=list)
    cancelled: list[LeaseContract] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)


def _one_of_many(label: str, item_id: int, errors: dict[int, str], work) -> bool:
    """Run one item of a sweep: its own domain error or deadlock is logged and the sweep
    goes on (the next tick tries it again); a lost database is raised, so the sweep stops
    and its task is retried instead of failing every item after it."""
    try:
        return work()
    except DomainError as exc:
        logger.error("%s: %s skipped: %s", label, item_id, exc.message)
        errors[item_id] = exc.message
    except DatabaseError as exc:
        if database_unreachable(exc):
            raise
        logger.exception("%s: %s skipped", label, item_id)
        errors[item_id] = f"database error: {exc}"
    return False


def grace_enforce(
    *, today: datetime.date | None = None, dry_run: bool = False, actor: Actor = GRACE_ACTOR
) -> GraceResult:
    """Cancel every contract past its grace deadline, each in its own transaction.

    One contract's error is logged (result.errors) and the others go on; a lost database
    stops the sweep with the error (see _one_of_many)."""
    today = today or timezone.localdate()
    result = GraceResult()
    ids = list(grace_candidates(today=today))
    contracts = LeaseContract.objects.filter(pk__in=ids).select_related("customer").order_by("pk")
    result.candidates = list(contracts)
    if dry_run:
        return result
    for contract in result.candidates:
        cancelled = _one_of_many(
            "grace",
            contract.pk,
            result.errors,
            lambda pk=contract.pk: contract_enforce_grace(contract_id=pk, today=today, actor=actor),
        )
        if cancelled:
            result.cancelled.append(contract)
    return result


# --- Past due -------------------------------------------------------------------------


def contract_mark_past_due_if_overdue(
    *, contract_id: int, today: datetime.date, actor: Actor = GRACE_ACTOR
) -> bool:
    """Active -> past_due while an invoice is overdue; re-checked under the contract lock.

    The re-check matters: a payment that committed since the candidates were read has
    already restored standing, and marking it past due again would be wrong. An invoice
    under review does not count.
    """
    with transaction.atomic():
        contract = LeaseContract.objects.select_for_update().get(pk=contract_id)
        if contract.status != ContractStatus.ACTIVE:
            return False
        overdue = (
            Invoice.objects.filter(overdue_q(today), contract_id=contract_id)
            .filter(~paused())
            .exists()
        )
        if not overdue:
            return False
        contract_mark_past_due(contract_id=contract_id, actor=actor)
    return True


def contracts_mark_past_due(*, today: datetime.date | None = None) -> int:
    today = today or timezone.localdate()
    errors: dict[int, str] = {}
    return sum(
        _one_of_many(
            "past due",
            cid,
            errors,
            lambda cid=cid: contract_mark_past_due_if_overdue(contract_id=cid, today=today),
        )
        for cid in list(past_due_candidates(today=today))
    )


# --- Reported invoices (disputes) -----------------------------------------------------
#
# Lock order: the invoice (lock_invoice), then the report, then the contract; the same
# order as grace enforcement and payments, so none of them deadlock with each other.

REPORT_DESCRIPTION_MAX = 4000
REPORT_CORRECTION_MAX = 2000
STAFF_MESSAGE_MAX = 4000


def _clean_text(value: str, *, label: str, limit: int, required: bool) -> str:
    value = (value or "").strip()
    code = label.replace(" ", "_")
    if required and not value:
        raise DomainError(f"Please describe the {label}.", code=f"{code}_missing")
    if len(value) > limit:
        raise DomainError(
            f"The {label} is too long ({len(value)} characters; at most {limit}).",
            code=f"{code}_too_long",
        )
    return value


def invoice_report_open(
    *,
    invoice_id: int,
    reason: str,
    description: str,
    expected_correction: str = "",
    reported_by: AbstractBaseUser | None,
    actor: Actor,
) -> InvoiceReport:
    """The customer reports a problem: the invoice is under review until staff resolve it.

    Decided under the invoice's lock: a draft or void invoice, one already under review
    (a second report, or two sent at once) or one paid and settled more than
    DISPUTE_WINDOW_DAYS ago is refused with a DomainError and nothing is written. The
    caller has already checked that the invoice is the customer's own.
    """
    if reason not in ReportReason.values:
        raise DomainError(
            f"Choose a reason: {', '.join(ReportReason.values)}.", code="reason_invalid"
        )
    description = _clean_text(
        description, label="problem", limit=REPORT_DESCRIPTION_MAX, required=True
    )
    expected_correction = _clean_text(
        expected_correction,
        label="expected correction",
        limit=REPORT_CORRECTION_MAX,
        required=False,
    )
    with transaction.atomic():
        invoice = lock_invoice(invoice_id)
        # Its own statement after the lock: sees a report committed while this waited.
        reported = invoice_is_under_review(invoice.pk)
        refusal = report_refusal(invoice, now=timezone.now(), already_reported=reported)
        if refusal:
            raise DomainError(refusal, code="already_reported" if reported else "not_reportable")
        report = InvoiceReport.objects.create(
            invoice=invoice,
            reported_by=reported_by,
            reason=reason,
            description=description,
            expected_correction=expected_correction,
        )
        audit_record(
            actor=actor,
            action="invoice_report.opened",
            target=report,
            customer=invoice.customer,
            after={
                "invoice": invoice.number,
                "reason": reason,
                "status": report.status,
                "expected_correction": expected_correction,
            },
            note=description[:300],
        )
        transaction.on_commit(lambda: _queue_report_notice(report.pk))
    logger.info("invoice %s reported (%s)", invoice.number, reason)
    return report


def _queue_report_notice(report_id: int) -> None:
    from .tasks import notify_report  # tasks imports this module

    enqueue(notify_report, report_id)


def _lock_report(report_id: int) -> tuple[Invoice, InvoiceReport]:
    invoice_id = InvoiceReport.objects.values_list("invoice_id", flat=True).get(pk=report_id)
    invoice = lock_invoice(invoice_id)
    return invoice, InvoiceReport.objects.select_for_update().get(pk=report_id)


def invoice_report_start_review(*, report_id: int, actor: Actor) -> InvoiceReport:
    """Staff take the report on (open -> under review). Quietly does nothing when it is
    already under review; a resolved report cannot be reopened."""
    with transaction.atomic():
        invoice, report = _lock_report(report_id)
        if report.status == ReportStatus.UNDER_REVIEW:
            return report
        _set_report_status(report, ReportStatus.UNDER_REVIEW, invoice=invoice, actor=actor)
    return report


def _set_report_status(
    report: InvoiceReport, target: str, *, invoice: Invoice, actor: Actor, after: dict | None = None
) -> None:
    """The one place a report's status is written. Caller holds the locks (_lock_report)."""
    check_transition(
        REPORT_TRANSITIONS,
        label=f"The report on {invoice.number}",
        current=report.status,
        target=target,
    )
    before = {"status": report.status}
    report.status = target
    if target not in UNRESOLVED_STATUSES:
        report.resolved_at = timezone.now()
        report.resolved_by = actor if isinstance(actor, AbstractBaseUser) else None
    report.save()
    audit_record(
        actor=actor,
        action=f"invoice_report.{target}",
        target=report,
        customer=invoice.customer,
        before=before,
        after={"status": target, "invoice": invoice.number, **(after or {})},
        note=report.staff_message[:300] if target not in UNRESOLVED_STATUSES else "",
    )


def _fresh_grace_window(invoice: Invoice, *, actor: Actor, today: datetime.date) -> datetime.date:
    """Collection resumes: the contract is not cancelled before today + GRACE_PERIOD_DAYS.

    Carried by the contract's grace_extended_until (never shortened), which every
    enforcement query, the cancellation warnings and the invoice's cancellation date
    already honour.
    """
    until = today + grace_period()
    contract = invoice.contract
    if (
        invoice.status == InvoiceStatus.OPEN
        and contract is not None
        and contract.status != ContractStatus.CANCELLED
        and not (contract.grace_extended_until and contract.grace_extended_until >= until)
    ):
        contract_extend_grace(
            contract_id=contract.pk,
            until=until,
            actor=actor,
            note=f"Fresh grace window after the report on {invoice.number} was resolved.",
        )
        contract.grace_extended_until = until
    return until


def _resolve(
    *,
    report_id: int,
    target: str,
    message: str,
    actor: Actor,
    credit_note_number: str = "",
) -> InvoiceReport:
    message = _clean_text(message, label="message", limit=STAFF_MESSAGE_MAX, required=True)
    with transaction.atomic():
        invoice, report = _lock_report(report_id)
        if report.status == target:
            return report
        today = timezone.localdate()
        report.staff_message = message
        report.credit_note_number = credit_note_number
        # Checked before the contract is touched: a resolved report raises here.
        check_transition(
            REPORT_TRANSITIONS,
            label=f"The report on {invoice.number}",
            current=report.status,
            target=target,
        )
        report.grace_until = _fresh_grace_window(invoice, actor=actor, today=today)
        _set_report_status(
            report,
            target,
            invoice=invoice,
            actor=actor,
            after={"grace_until": report.grace_until, "credit_note": credit_note_number},
        )
        transaction.on_commit(lambda: _queue_report_notice(report.pk))
    return report


def invoice_report_reject(*, report_id: int, message: str, actor: Actor) -> InvoiceReport:
    """Staff find the invoice right: the customer is told why, and collection resumes with
    a fresh grace window of GRACE_PERIOD_DAYS counted from today.

    Quietly returns the report when it is already rejected; a corrected one cannot be
    rejected (InvalidTransition). A message for the customer is required.
    """
    return _resolve(report_id=report_id, target=ReportStatus.REJECTED, message=message, actor=actor)


def invoice_report_correct(
    *, report_id: int, message: str, actor: Actor, credit_note_number: str = ""
) -> InvoiceReport:
    """Staff agree and correct the invoice: the report is closed as corrected with a
    message to the customer and the number of the credit note that corrected it.

    Whatever the invoice still asks for after the correction is collected again from a
    fresh grace window, as after a rejection. Quietly returns the report when it is
    already corrected; a rejected one cannot be corrected (InvalidTransition).
    """
    credit_note_number = (credit_note_number or "").strip()
    if len(credit_note_number) > 32:
        raise DomainError("A credit note number has at most 32 characters.", code="credit_note")
    if credit_note_number:
        # Credit notes never change once issued: checking before the report's lock is enough.
        invoice_id = InvoiceReport.objects.values_list("invoice_id", flat=True).get(pk=report_id)
        if not CreditNote.objects.filter(number=credit_note_number, invoice_id=invoice_id).exists():
            raise DomainError(
                f"Credit note {credit_note_number} does not credit this report's invoice; issue "
                'it on the invoice first (invoice admin, action "Issue a credit note").',
                code="credit_note",
            )
    return _resolve(
        report_id=report_id,
        target=ReportStatus.CORRECTED,
        message=message,
        actor=actor,
        credit_note_number=credit_note_number,
    )


# --- What to remind and retry ---------------------------------------------------------
