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
from django.db import DatabaseError, transaction
from django.utils import timezone

from billing.invoices.models import Invoice, InvoiceStatus, overdue_q
from billing.payments.tasks import expire_checkout_sessions
from contracts.models import CancellationReason, ContractStatus, LeaseContract
from contracts.services import contract_cancel, contract_mark_past_due
from core.audit import Actor, audit_record
from core.db import database_unreachable
from core.errors import DomainError
from core.queue import enqueue

from .selectors import grace_candidates, grace_period, past_due_candidates

logger = logging.getLogger(__name__)

GRACE_ACTOR = "grace enforcement"


# --- Grace enforcement ----------------------------------------------------------------


def contract_enforce_grace(
    *, contract_id: int, today: datetime.date | None = None, actor: Actor = GRACE_ACTOR
) -> bool:
    """Cancel the contract for non-payment if, under lock, an invoice is still unpaid past grace.

    Returns True when this call cancelled it; quietly False when it was paid meanwhile,
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
    already restored standing, and marking it past due again would be wrong.
    """
    with transaction.atomic():
        contract = LeaseContract.objects.select_for_update().get(pk=contract_id)
        if contract.status != ContractStatus.ACTIVE:
            return False
        overdue = Invoice.objects.filter(overdue_q(today), contract_id=contract_id).exists()
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


# --- What to remind and retry ---------------------------------------------------------
