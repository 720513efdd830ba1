"""Writes for invoices: drafting, the billing run, finalising, voiding, writing off.

Every service owns its transaction, locks the invoice row (always the invoice before
its payments, so two services never deadlock; billing.payments.services locks
through lock_invoice too), re-checks state under the lock, is safe to call again, and leaves
an audit entry. Domain events go out through billing.invoices.signals after commit.
"""

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.dispatch import Signal
from django.utils import timezone

from contracts.models import ContractStatus, LeaseContract
from contracts.periods import add_months, period_for
from contracts.services import contract_restore
from core.audit import Actor, audit_record
from core.db import database_unreachable
from core.errors import DomainError, check_transition
from core.money import ZERO, quantize

from . import signals
from .balance import apply_balance_locked, unapply_balance_locked
from .models import (
    INVOICE_TRANSITIONS,
    BillingReason,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceTax,
    overdue_q,
)
from .numbering import allocate_invoice_number
from .tax import tax_breakdown, tax_for_customer

logger = logging.getLogger(__name__)

BILLING_RUN = "billing run"

_STATUS_TIMESTAMPS = {
    InvoiceStatus.PAID: "paid_at",
    InvoiceStatus.VOID: "voided_at",
    InvoiceStatus.REFUND: "refunded_at",
    InvoiceStatus.UNCOLLECTIBLE: "marked_uncollectible_at",
}


def emit_after_commit(signal: Signal, **kwargs) -> None:
    def send() -> None:
        for receiver, result in signal.send_robust(sender=Invoice, **kwargs):
            if isinstance(result, Exception):
                logger.error("receiver %r failed for %s", receiver, kwargs, exc_info=result)

    transaction.on_commit(send)


def lock_invoice(invoice_id: int) -> Invoice:
    """Lock the invoice row (inside the caller's transaction); every money service starts here.

    Always the invoice before its payments, so two services never deadlock.
    """
    # of=self: the joined customer and contract rows are read, not locked; locking them
    # made payments and the billing run wait on each other in opposite orders (deadlock).
    try:
        return (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("customer", "contract")
            .get(pk=invoice_id)
        )
    except Invoice.DoesNotExist:
        raise DomainError("That invoice does not exist.", code="not_found") from None


def set_invoice_status(
    invoice: Invoice,
    target: str,
    *,
    actor: Actor,
    now: datetime.datetime | None = None,
    note: str = "",
    extra: dict | None = None,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """The one place an invoice's status is written. Caller holds the row lock.

    `changes` are the other fields that move with the status (amount_paid when a payment
    settles the invoice, amount_refunded, ...): pass them here rather than setting them on
    the instance first, so that the audit entry records each one's value before and after.
    """
    check_transition(
        INVOICE_TRANSITIONS, label=f"Invoice {invoice}", current=invoice.status, target=target
    )
    changes = dict(changes or {})
    recorded = ["amount_paid", *(name for name in changes if name != "amount_paid")]
    before = {"status": invoice.status, **{name: getattr(invoice, name) for name in recorded}}
    old = invoice.status
    for name, value in changes.items():
        setattr(invoice, name, value)
    invoice.status = target
    stamp = _STATUS_TIMESTAMPS.get(target)
    if stamp:
        setattr(invoice, stamp, now or timezone.now())
    invoice.state_version += 1
    invoice.save()
    audit_record(
        actor=actor,
        action=f"invoice.{target}",
        target=invoice,
        customer=invoice.customer,
        before=before,
        after={
            "status": target,
            **{name: getattr(invoice, name) for name in recorded},
            **(extra or {}),
        },
        note=note,
    )
    emit_after_commit(
        signals.invoice_status_changed, invoice_id=invoice.pk, old_status=old, new_status=target
    )


# --- Issuing ------------------------------------------------------------------------


def _draft_for_period(contract: LeaseContract, start: datetime.date) -> Invoice:
    anchor = contract.billing_anchor_day
    start, end, full = period_for(start, anchor)
    price = contract.price_per_block
    description_suffix = f"{start:%d %b %Y} to {end:%d %b %Y}"
    if not full:
        next_anchor = end + datetime.timedelta(days=1)
        month_days = (next_anchor - add_months(next_anchor, -1, anchor)).days
        days = (end - start).days + 1
        price = quantize(price * days / month_days)
        description_suffix += f" (prorated {days}/{month_days} days)"
    invoice = Invoice.objects.create(
        customer=contract.customer,
        contract=contract,
        currency=contract.currency,
        period_start=start,
        period_end=end,
        billing_reason=(
            BillingReason.SUBSCRIPTION_CREATE
            if start == contract.started_on
            else BillingReason.SUBSCRIPTION_CYCLE
        ),
    )
    lines = [
        InvoiceLine(
            invoice=invoice,
            position=i,
            description=f"IPv4 lease {block.prefix} ({block.size} addresses), {description_suffix}",
            block=block,
            period_start=start,
            period_end=end,
            quantity=Decimal("1"),
            unit_price=price,
            amount=quantize(price),
        )
        for i, block in enumerate(contract.blocks.order_by("first_address"))
    ]
    InvoiceLine.objects.bulk_create(lines)
    invoice.subtotal = invoice.total = sum((line.amount for line in lines), ZERO)
    invoice.save(update_fields=["subtotal", "total"])
    return invoice


def contract_bill_due_periods(
    *, contract_id: int, today: datetime.date, actor: Actor = BILLING_RUN, finalize: bool = True
) -> list[Invoice]:
    """Issue one invoice for each period of the contract that has started by `today`.

    Idempotent: the contract's next_billing_date moves past every period it bills,
    under the contract's row lock, and a unique constraint forbids a second live
    invoice for the same contract and period.
    """
    issued: list[Invoice] = []
    with transaction.atomic():
        contract = (
            LeaseContract.objects.select_for_update(of=("self",))
            .select_related("customer")
            .get(pk=contract_id)
        )
        while contract.status != ContractStatus.CANCELLED and contract.next_billing_date <= today:
            invoice = _draft_for_period(contract, contract.next_billing_date)
            audit_record(
                actor=actor,
                action="invoice.draft_created",
                target=invoice,
                customer=contract.customer,
                after={"period_start": invoice.period_start, "subtotal": invoice.subtotal},
            )
            if finalize:
                invoice = _finalize_locked(invoice, actor=actor, today=today)
            issued.append(invoice)
            contract.next_billing_date = invoice.period_end + datetime.timedelta(days=1)
            contract.save(update_fields=["next_billing_date", "updated_at"])
    return issued


@dataclass
class BillingRunResult:
    invoice_ids: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)


def billing_run(
    *, today: datetime.date | None = None, actor: Actor = BILLING_RUN
) -> BillingRunResult:
    """Bill every live contract whose next period has started. Safe to run any number of times.

    Candidates come from the (status, next_billing_date) index, so the cost follows the
    number of contracts due today, not the size of the table. Their ids are read first, in
    one query: no cursor stays open across the run for an outage to break. Each contract is
    billed in its own transaction: one bad contract (a domain error, a deadlock) is reported
    and does not stop the others. A lost database connection stops the run and is raised:
    every contract after it would fail the same way, and the task is retried (the contracts
    already billed have moved their next_billing_date and are not billed again).
    """
    today = today or timezone.localdate()
    result = BillingRunResult()
    due = list(
        LeaseContract.objects.filter(
            status__in=[ContractStatus.ACTIVE, ContractStatus.PAST_DUE],
            next_billing_date__lte=today,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for contract_id in due:
        try:
            invoices = contract_bill_due_periods(contract_id=contract_id, today=today, actor=actor)
        except DomainError as exc:
            logger.error("billing run: contract %s not billed: %s", contract_id, exc.message)
            result.errors[contract_id] = exc.message
            continue
        except DatabaseError as exc:
            if database_unreachable(exc):
                logger.error(
                    "billing run: database lost at contract %s; %s of %s billed, stopping",
                    contract_id,
                    len(result.invoice_ids),
                    len(due),
                )
                raise
            # A deadlock or lock timeout rolls back this contract only; the next run bills it.
            logger.exception("billing run: contract %s not billed", contract_id)
            result.errors[contract_id] = f"database error: {exc}"
            continue
        result.invoice_ids.extend(inv.pk for inv in invoices)
    return result


def _finalize_locked(invoice: Invoice, *, actor: Actor, today: datetime.date) -> Invoice:
    check_transition(
        INVOICE_TRANSITIONS,
        label=f"Invoice {invoice}",
        current=invoice.status,
        target=InvoiceStatus.OPEN,
    )
    customer = invoice.customer
    lines = list(invoice.lines.all())
    if not lines:
        raise DomainError(
            f"Invoice {invoice} has no lines; add one before finalising.", code="empty"
        )
    decision = tax_for_customer(customer, on=today)
    for line in lines:
        line.tax_rate = decision.rate
    InvoiceLine.objects.bulk_update(lines, ["tax_rate"])
    groups = tax_breakdown(((line.amount, line.tax_rate) for line in lines), decision)
    invoice.tax_lines.all().delete()
    InvoiceTax.objects.bulk_create(
        InvoiceTax(
            invoice=invoice,
            name=g.name,
            rate=g.rate,
            taxable_amount=g.taxable_amount,
            amount=g.amount,
            note=g.note,
        )
        for g in groups
    )
    invoice.subtotal = sum((g.taxable_amount for g in groups), ZERO)
    invoice.tax = sum((g.amount for g in groups), ZERO)
    invoice.total = invoice.subtotal + invoice.tax
    invoice.tax_note = decision.note
    invoice.issue_date = today
    invoice.due_date = today + datetime.timedelta(days=settings.PAYMENT_TERMS_DAYS)
    invoice.number = allocate_invoice_number(series=settings.INVOICE_NUMBER_SERIES, year=today.year)
    invoice.bill_to_name = customer.name
    invoice.bill_to_address = "\n".join(customer.address_lines)
    invoice.bill_to_country = customer.country
    invoice.bill_to_tax_id = customer.tax_id
    invoice.bill_to_email = customer.email
    invoice.bill_to_line1 = customer.address_line1
    invoice.bill_to_line2 = customer.address_line2
    invoice.bill_to_postal_code = customer.postal_code
    invoice.bill_to_city = customer.city
    invoice.bill_to_state = customer.state
    contract = invoice.contract
    invoice.buyer_reference = (contract and contract.buyer_reference) or customer.buyer_reference
    invoice.purchase_order_reference = (
        contract and contract.purchase_order_reference
    ) or customer.purchase_order_reference
    invoice.document_language = customer.document_language
    # The customer's credit in this currency is used first (Stripe's customer balance).
    apply_balance_locked(invoice, actor=actor)
    set_invoice_status(
        invoice,
        InvoiceStatus.OPEN,
        actor=actor,
        extra={
            "number": invoice.number,
            "total": invoice.total,
            "applied_balance": invoice.applied_balance,
            "currency": invoice.currency,
            "due_date": invoice.due_date,
        },
    )
    if invoice.total == ZERO:
        # Nothing to collect: settle at once, as Stripe does with zero-amount invoices.
        set_invoice_status(
            invoice,
            InvoiceStatus.PAID,
            actor=actor,
            note="zero total",
            changes={"paid_out_of_band": True},
        )
    elif invoice.amount_remaining == ZERO:
        set_invoice_status(
            invoice, InvoiceStatus.PAID, actor=actor, note="paid from the customer's credit"
        )
    emit_after_commit(signals.invoice_finalized, invoice_id=invoice.pk)
    return invoice


def invoice_finalize(
    *, invoice_id: int, actor: Actor, today: datetime.date | None = None
) -> Invoice:
    """Draft -> Open: taxes, gapless number, issue and due dates. Refuses a non-draft."""
    with transaction.atomic():
        invoice = lock_invoice(invoice_id)
        return _finalize_locked(invoice, actor=actor, today=today or timezone.localdate())


def invoice_void(*, invoice_id: int, actor: Actor, reason: str = "") -> Invoice:
    """Draft/Open/Uncollectible -> Void. An invoice with money on it cannot be voided; credit
    it had used from the customer's balance goes back there. Quietly returns a void one."""
    with transaction.atomic():
        invoice = lock_invoice(invoice_id)
        if invoice.status == InvoiceStatus.VOID:
            return invoice
        if invoice.amount_paid > 0:
            raise DomainError(
                f"Invoice {invoice} has payments on it; refund them instead of voiding.",
                code="has_payments",
            )
        # Credit the invoice had used goes back to the customer's balance.
        returned = unapply_balance_locked(invoice, actor=actor)
        set_invoice_status(
            invoice,
            InvoiceStatus.VOID,
            actor=actor,
            note=reason,
            extra={"balance_returned": returned} if returned else None,
        )
        # Nothing is owed on it any more: the contract may be back in good standing.
        restore_standing_if_settled(invoice, actor=actor, today=timezone.localdate())
    return invoice


def invoice_mark_uncollectible(*, invoice_id: int, actor: Actor, reason: str = "") -> Invoice:
    """Open -> Uncollectible (written off by staff; a later payment still settles it)."""
    with transaction.atomic():
        invoice = lock_invoice(invoice_id)
        if invoice.status == InvoiceStatus.UNCOLLECTIBLE:
            return invoice
        set_invoice_status(invoice, InvoiceStatus.UNCOLLECTIBLE, actor=actor, note=reason)
        restore_standing_if_settled(invoice, actor=actor, today=timezone.localdate())
    return invoice


def restore_standing_if_settled(invoice: Invoice, *, actor: Actor, today: datetime.date) -> None:
    if not invoice.contract_id:
        return
    still_overdue = Invoice.objects.filter(
        overdue_q(today), contract_id=invoice.contract_id
    ).exists()
    if not still_overdue:
        contract_restore(contract_id=invoice.contract_id, actor=actor)
