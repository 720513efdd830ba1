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
from django.db import DatabaseError, connection, transaction
from django.db.models import Prefetch, Subquery
from django.dispatch import Signal
from django.utils import timezone

from contracts.models import ContractStatus, IPBlock, LeaseContract
from contracts.periods import add_months, period_for
from contracts.services import contract_restore
from core.audit import Actor, audit_entry, audit_record, audit_record_many
from core.db import database_unreachable
from core.errors import DomainError, check_transition
from core.money import ZERO, quantize
from core.queue import enqueue_on_commit

from . import signals
from .balance import apply_balance_locked, unapply_balance_locked
from .models import (
    INVOICE_TRANSITIONS,
    BillingReason,
    CustomerBalance,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceTax,
    overdue_q,
)
from .numbering import allocate_invoice_number, allocate_invoice_numbers
from .tax import RatesOn, TaxDecision, tax_breakdown, tax_for_customer

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


def lock_invoice(invoice_id: int | Subquery) -> Invoice:
    """Lock the invoice row (inside the caller's transaction); every money service starts here.
    (`invoice_id` may be a subquery that finds it, e.g. through a payment.)

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


def _plan_period(
    contract: LeaseContract, start: datetime.date, blocks: list
) -> tuple[Invoice, list[InvoiceLine]]:
    """The draft invoice and its lines for the period beginning at `start`, unsaved.

    The one place a period, its proration and its lines are computed: the billing run's
    chunks and the per-contract path both draft through here.
    """
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
    invoice = Invoice(
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
        for i, block in enumerate(blocks)
    ]
    invoice.subtotal = invoice.total = sum((line.amount for line in lines), ZERO)
    return invoice, lines


def _draft_for_period(contract: LeaseContract, start: datetime.date) -> Invoice:
    invoice, lines = _plan_period(contract, start, list(contract.blocks.order_by("first_address")))
    invoice.save(force_insert=True)
    InvoiceLine.objects.bulk_create(lines)
    return invoice


def _price_and_snapshot(
    invoice: Invoice, lines: list[InvoiceLine], decision: TaxDecision, *, today: datetime.date
) -> list[InvoiceTax]:
    """What finalising computes, on the instances (nothing written): each line's tax rate,
    the tax rows, totals, dates, and the customer as billed. Returns the unsaved tax rows."""
    customer = invoice.customer
    for line in lines:
        line.tax_rate = decision.rate
    groups = tax_breakdown(((line.amount, line.tax_rate) for line in lines), decision)
    invoice.subtotal = sum((g.taxable_amount for g in groups), ZERO)
    invoice.tax = sum((g.amount for g in groups), ZERO)
    invoice.total = invoice.subtotal + invoice.tax
    invoice.tax_note = decision.note
    invoice.issue_date = today
    invoice.due_date = today + datetime.timedelta(days=settings.PAYMENT_TERMS_DAYS)
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
    return [
        InvoiceTax(
            invoice=invoice,
            name=g.name,
            rate=g.rate,
            taxable_amount=g.taxable_amount,
            amount=g.amount,
            note=g.note,
        )
        for g in groups
    ]


def contract_bill_due_periods(
    *, contract_id: int, today: datetime.date, actor: Actor = BILLING_RUN, finalize: bool = True
) -> list[Invoice]:
    """Issue one invoice for each period of the contract that has started by `today`.

    The per-contract path (admin action, the billing run's contracts that need more than
    the chunk path does, and its retry of a failed chunk one contract at a time).
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

    def add(self, other: "BillingRunResult") -> None:
        self.invoice_ids.extend(other.invoice_ids)
        self.errors.update(other.errors)


def due_contract_ids(today: datetime.date) -> list[int]:
    """Live contracts whose next period has started, from the (status, next_billing_date)
    index: the cost follows the contracts due today, not the size of the table. Read in one
    query, so no cursor stays open across the run for an outage to break."""
    return list(
        LeaseContract.objects.filter(
            status__in=[ContractStatus.ACTIVE, ContractStatus.PAST_DUE],
            next_billing_date__lte=today,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def chunked(ids: list[int], size: int | None = None) -> list[list[int]]:
    size = size or settings.BILLING_CHUNK_SIZE
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def billing_run(
    *, today: datetime.date | None = None, actor: Actor = BILLING_RUN, chunk_size: int | None = None
) -> BillingRunResult:
    """Bill every live contract whose next period has started, in this process, chunk after
    chunk (the management command, the demo seed). Safe to run any number of times.

    The Celery task invoices.run_billing bills the same chunks on the workers instead.
    One bad contract is reported and does not stop the others (see bill_contracts). A lost
    database connection stops the run and is raised: every contract after it would fail
    the same way, and the task is retried (contracts already billed have moved their
    next_billing_date and are not billed again).
    """
    today = today or timezone.localdate()
    result = BillingRunResult()
    due = due_contract_ids(today)
    for chunk in chunked(due, chunk_size):
        try:
            result.add(bill_contracts(contract_ids=chunk, today=today, actor=actor))
        except DatabaseError:
            logger.error(
                "billing run: database lost; %s of %s contracts done, stopping",
                len(result.invoice_ids) + len(result.errors),
                len(due),
            )
            raise
    return result


def bill_contracts(
    *, contract_ids: list[int], today: datetime.date, actor: Actor = BILLING_RUN
) -> BillingRunResult:
    """Bill a chunk of contracts: one transaction for the common case, each contract alone
    for the rest. Idempotent, like the per-contract path: the contracts are locked and
    re-read (due, not cancelled), so a chunk that runs twice, or alongside a run of its
    own, bills each period once.

    Isolation: a database error in the chunk's transaction (a deadlock, a constraint one
    contract's data breaks) rolls the chunk back and every contract of it is billed again
    in its own transaction, so one bad contract costs the others only time; its error is
    reported. A lost connection is raised (the task retries the chunk).
    """
    result = BillingRunResult()
    alone = list(contract_ids)
    if connection.vendor == "postgresql":
        try:
            issued, alone = _bill_chunk(contract_ids, today=today, actor=actor)
            result.invoice_ids.extend(issued)
        except (DatabaseError, DomainError) as exc:
            if isinstance(exc, DatabaseError) and database_unreachable(exc):
                raise
            logger.warning(
                "billing run: chunk of %s contracts rolled back (%s); billing each alone",
                len(contract_ids),
                exc,
            )
            alone = list(contract_ids)
    for contract_id in alone:
        try:
            invoices = contract_bill_due_periods(contract_id=contract_id, today=today, actor=actor)
        except DomainError as exc:
            logger.error("billing run: contract %s not billed: %s", contract_id, exc.message)
            result.errors[contract_id] = exc.message
            continue
        except DatabaseError as exc:
            if database_unreachable(exc):
                raise
            # A deadlock or lock timeout rolls back this contract only; the next run bills it.
            logger.exception("billing run: contract %s not billed", contract_id)
            result.errors[contract_id] = f"database error: {exc}"
            continue
        result.invoice_ids.extend(inv.pk for inv in invoices)
    return result


@dataclass
class _Planned:
    invoice: Invoice
    lines: list[InvoiceLine]
    taxes: list[InvoiceTax]


def _reserve_invoice_ids(count: int) -> list[int]:
    """Primary keys for invoices inserted later in this transaction, so their lines, tax rows
    and audit entries can be written before them (foreign keys are checked at commit) and
    the invoice row itself, numbered, is the last thing written."""
    table = Invoice._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, count],
        )
        return [row[0] for row in cursor.fetchall()]


def _bill_chunk(
    contract_ids: list[int], *, today: datetime.date, actor: Actor
) -> tuple[list[int], list[int]]:
    """The chunk path (PostgreSQL): a fixed number of statements per chunk, none per invoice.

    Reads: the contracts (locked) with their customers, their blocks, the tax rates in
    force today, which of the customers have credit. Writes: lines, tax rows, the contracts'
    next billing dates, then last the numbers (one counter statement, whose row lock every
    other issuer waits for until this commit) and the invoice rows, each written once,
    complete, and the audit entries in one INSERT. One message after commit names all the
    invoices (signals.invoices_issued).

    Returns (invoice ids issued, contract ids to bill alone): contracts whose customer has
    credit in the currency (applying it locks the balance and writes a ledger), whose
    invoice would total zero (settled at once), or whose invoice cannot be finalised (no
    blocks, no tax rate: the per-contract path reports why).
    """
    with transaction.atomic():
        contracts = list(
            LeaseContract.objects.select_for_update(of=("self",))
            .select_related("customer")
            .prefetch_related(
                Prefetch("blocks", queryset=IPBlock.objects.order_by("first_address"))
            )
            .filter(pk__in=contract_ids, next_billing_date__lte=today)
            .exclude(status=ContractStatus.CANCELLED)
            .order_by("pk")
        )
        if not contracts:
            return [], []
        rates = RatesOn(today)
        with_credit = set(
            CustomerBalance.objects.filter(
                customer_id__in={c.customer_id for c in contracts}, amount__gt=0
            ).values_list("customer_id", "currency")
        )
        planned: list[_Planned] = []
        billed: list[LeaseContract] = []
        alone: list[int] = []
        now = timezone.now()
        for contract in contracts:
            if (contract.customer_id, contract.currency) in with_credit:
                alone.append(contract.pk)
                continue
            try:
                periods = _plan_contract(contract, today=today, rates=rates)
            except DomainError:
                alone.append(contract.pk)
                continue
            if periods is None:
                alone.append(contract.pk)
                continue
            planned.extend(periods)
            contract.next_billing_date = periods[-1].invoice.period_end + datetime.timedelta(days=1)
            contract.updated_at = now
            billed.append(contract)
        if not planned:
            return [], alone
        for plan, pk in zip(planned, _reserve_invoice_ids(len(planned)), strict=True):
            plan.invoice.pk = pk
        InvoiceLine.objects.bulk_create(line for plan in planned for line in plan.lines)
        InvoiceTax.objects.bulk_create(tax for plan in planned for tax in plan.taxes)
        _move_next_billing_dates(billed, now=now)
        audit_record_many([_draft_entry(plan.invoice, actor=actor) for plan in planned])
        # Last: the numbers, then the rows that carry them (the invoices, and the entries
        # that record the number). The counter's row lock is held from here to the commit.
        numbers = allocate_invoice_numbers(
            series=settings.INVOICE_NUMBER_SERIES, year=today.year, count=len(planned)
        )
        for plan, number in zip(planned, numbers, strict=True):
            plan.invoice.number = number
        Invoice.objects.bulk_create(plan.invoice for plan in planned)
        audit_record_many([_open_entry(plan.invoice, actor=actor) for plan in planned])
        issued = [plan.invoice.pk for plan in planned]
        # The chunk's one message: its worker tells the other apps (signals.invoices_issued).
        from . import tasks  # tasks import this module

        enqueue_on_commit(tasks.invoices_issued, issued)
    return issued, alone


def _move_next_billing_dates(contracts: list[LeaseContract], *, now: datetime.datetime) -> None:
    """One UPDATE from two arrays for the chunk (bulk_update's CASE over 100 ids costs
    PostgreSQL several times as much to plan and run)."""
    assert LeaseContract._meta.db_table == "contracts_leasecontract"
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE contracts_leasecontract AS c SET next_billing_date = v.next, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::date[]) AS v(id, next) WHERE c.id = v.id",
            [now, [c.pk for c in contracts], [c.next_billing_date for c in contracts]],
        )


def _plan_contract(
    contract: LeaseContract, *, today: datetime.date, rates: RatesOn
) -> list[_Planned] | None:
    """Every period of the contract due by `today`, finalised in memory; None when one of
    them needs the per-contract path (no lines, a zero total)."""
    decision = tax_for_customer(contract.customer, on=today, rates=rates)
    blocks = list(contract.blocks.all())  # prefetched, ordered by first address
    if not blocks:
        return None
    periods = []
    start = contract.next_billing_date
    while start <= today:
        invoice, lines = _plan_period(contract, start, blocks)
        taxes = _price_and_snapshot(invoice, lines, decision, today=today)
        if invoice.total == ZERO:
            return None
        invoice.status = InvoiceStatus.OPEN
        # As if drafted (version 1) and finalised (2), which the per-contract path does.
        invoice.state_version = 2
        periods.append(_Planned(invoice, lines, taxes))
        start = invoice.period_end + datetime.timedelta(days=1)
    return periods


def _draft_entry(invoice: Invoice, *, actor: Actor):
    """The audit entries the per-contract path writes for the same invoice, in bulk."""
    return audit_entry(
        actor=actor,
        action="invoice.draft_created",
        target=invoice,
        customer=invoice.customer,
        after={"period_start": invoice.period_start, "subtotal": invoice.subtotal},
    )


def _open_entry(invoice: Invoice, *, actor: Actor):
    return audit_entry(
        actor=actor,
        action=f"invoice.{InvoiceStatus.OPEN}",
        target=invoice,
        customer=invoice.customer,
        before={"status": InvoiceStatus.DRAFT, "amount_paid": ZERO},
        after={
            "status": InvoiceStatus.OPEN,
            "amount_paid": invoice.amount_paid,
            "number": invoice.number,
            "total": invoice.total,
            "applied_balance": invoice.applied_balance,
            "currency": invoice.currency,
            "due_date": invoice.due_date,
        },
    )


def _finalize_locked(invoice: Invoice, *, actor: Actor, today: datetime.date) -> Invoice:
    check_transition(
        INVOICE_TRANSITIONS,
        label=f"Invoice {invoice}",
        current=invoice.status,
        target=InvoiceStatus.OPEN,
    )
    lines = list(invoice.lines.all())
    if not lines:
        raise DomainError(
            f"Invoice {invoice} has no lines; add one before finalising.", code="empty"
        )
    decision = tax_for_customer(invoice.customer, on=today)
    taxes = _price_and_snapshot(invoice, lines, decision, today=today)
    InvoiceLine.objects.bulk_update(lines, ["tax_rate"])
    invoice.tax_lines.all().delete()
    InvoiceTax.objects.bulk_create(taxes)
    # Before the balance is applied: its ledger's audit entry names the invoice's number.
    invoice.number = allocate_invoice_number(series=settings.INVOICE_NUMBER_SERIES, year=today.year)
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
