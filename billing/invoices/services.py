"""Writes for invoices: drafting, the billing run, finalising, voiding, writing off.

Every service owns its transaction, locks the invoice row (always the invoice before
its payments, so two services never deadlock; billing.payments.services locks
through lock_invoice too), re-checks state under the lock, is safe to call again, and leaves
an audit entry. Domain events go out through billing.invoices.signals after commit.
"""

import datetime
import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from contracts.models import ContractStatus, LeaseContract
from contracts.periods import add_months, period_for
from contracts.services import contract_restore
from core.audit import Actor, audit_actor, audit_copy_many, audit_plain, audit_record, audit_row
from core.db import copy_rows, database_unreachable
from core.errors import DomainError, check_transition
from core.money import ZERO, quantize
from core.queue import enqueue_on_commit

from . import numbering, signals
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
from .numbering import allocate_invoice_number
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


@dataclass(frozen=True)
class _Period:
    """A period's terms: dates, reason, the price per block (prorated when partial)."""

    start: datetime.date
    end: datetime.date
    billing_reason: str
    unit_price: Decimal
    suffix: str

    def line_description(self, prefix: str, size: int) -> str:
        return f"IPv4 lease {prefix} ({size} addresses), {self.suffix}"


def _period_terms(contract: LeaseContract, start: datetime.date) -> _Period:
    """The one place a period and its proration are computed: the billing run's chunks and
    the per-contract path both bill through here."""
    anchor = contract.billing_anchor_day
    start, end, full = period_for(start, anchor)
    price = contract.price_per_block
    suffix = f"{start:%d %b %Y} to {end:%d %b %Y}"
    if not full:
        next_anchor = end + datetime.timedelta(days=1)
        month_days = (next_anchor - add_months(next_anchor, -1, anchor)).days
        days = (end - start).days + 1
        price = quantize(price * days / month_days)
        suffix += f" (prorated {days}/{month_days} days)"
    reason = (
        BillingReason.SUBSCRIPTION_CREATE
        if start == contract.started_on
        else BillingReason.SUBSCRIPTION_CYCLE
    )
    return _Period(start, end, reason, price, suffix)


def _plan_period(
    contract: LeaseContract, start: datetime.date, blocks: list
) -> tuple[Invoice, list[InvoiceLine]]:
    """The draft invoice and its lines for the period beginning at `start`, unsaved."""
    period = _period_terms(contract, start)
    invoice = Invoice(
        customer=contract.customer,
        contract=contract,
        currency=contract.currency,
        period_start=period.start,
        period_end=period.end,
        billing_reason=period.billing_reason,
    )
    lines = [
        InvoiceLine(
            invoice=invoice,
            position=i,
            description=period.line_description(block.prefix, block.size),
            block=block,
            period_start=period.start,
            period_end=period.end,
            quantity=Decimal("1"),
            unit_price=period.unit_price,
            amount=quantize(period.unit_price),
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


def _as_billed(customer, contract: LeaseContract | None) -> dict[str, str]:
    """The customer as billed, copied onto the invoice when it is issued."""
    return {
        "bill_to_name": customer.name,
        "bill_to_address": "\n".join(customer.address_lines),
        "bill_to_country": customer.country,
        "bill_to_tax_id": customer.tax_id,
        "bill_to_email": customer.email,
        "bill_to_line1": customer.address_line1,
        "bill_to_line2": customer.address_line2,
        "bill_to_postal_code": customer.postal_code,
        "bill_to_city": customer.city,
        "bill_to_state": customer.state,
        "buyer_reference": (contract and contract.buyer_reference) or customer.buyer_reference,
        "purchase_order_reference": (contract and contract.purchase_order_reference)
        or customer.purchase_order_reference,
        "document_language": customer.document_language,
    }


def _totals(groups) -> tuple[Decimal, Decimal, Decimal]:
    subtotal = sum((g.taxable_amount for g in groups), ZERO)
    tax = sum((g.amount for g in groups), ZERO)
    return subtotal, tax, subtotal + tax


def _price_and_snapshot(
    invoice: Invoice, lines: list[InvoiceLine], decision: TaxDecision, *, today: datetime.date
) -> list[InvoiceTax]:
    """What finalising computes, on the instances (nothing written): each line's tax rate,
    the tax rows, totals, dates, and the customer as billed. Returns the unsaved tax rows."""
    for line in lines:
        line.tax_rate = decision.rate
    groups = tax_breakdown(((line.amount, line.tax_rate) for line in lines), decision)
    invoice.subtotal, invoice.tax, invoice.total = _totals(groups)
    invoice.tax_note = decision.note
    invoice.issue_date = today
    invoice.due_date = today + datetime.timedelta(days=settings.PAYMENT_TERMS_DAYS)
    for name, value in _as_billed(invoice.customer, invoice.contract).items():
        setattr(invoice, name, value)
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


@dataclass
class _ChunkRows:
    """A chunk's rows as plain values in their tables' column order (no model instances:
    building, validating and adapting ~700 of them was most of a chunk's Python time)."""

    invoices: list[tuple] = field(default_factory=list)
    lines: list[tuple] = field(default_factory=list)
    taxes: list[tuple] = field(default_factory=list)
    drafted: list[dict] = field(default_factory=list)  # audit entries (core.audit.audit_row)
    line_columns: list[str] = field(default_factory=list)
    tax_columns: list[str] = field(default_factory=list)


@dataclass
class _Planned:
    """One invoice of a chunk: its row's values and what its lines and tax rows need."""

    contract: LeaseContract
    period: _Period
    invoice: dict
    amount: Decimal  # each line's
    decision: TaxDecision
    groups: list


def _fields(model, *, skip: tuple[str, ...] = ()) -> list:
    return [f for f in model._meta.concrete_fields if f.attname not in skip]


def _row_maker(model, *, skip: tuple[str, ...] = ()):
    """A function turning {attname: value} into the table's row tuple. Fields a row leaves
    out take the model's default, so a column added later gets its default here too."""
    fields = _fields(model, skip=skip)
    defaults = {f.attname: f.get_default() for f in fields}
    names = [f.attname for f in fields]

    def make(values: dict) -> tuple:
        row = {**defaults, **values}
        assert len(row) == len(names), set(row) - set(names)  # a misspelt field name
        return tuple(row[name] for name in names)

    return make, [f.column for f in fields]


def _blocks_of(contract_ids: list[int]) -> dict[int, list[tuple[int, str, int]]]:
    """(block id, prefix, size) per contract, ordered by first address: one query."""
    through = LeaseContract.blocks.through
    blocks: dict[int, list[tuple[int, str, int]]] = {}
    rows = (
        through.objects.filter(leasecontract_id__in=contract_ids)
        .order_by("ipblock__first_address")
        .values_list(
            "leasecontract_id", "ipblock_id", "ipblock__prefix", "ipblock__first_address",
            "ipblock__last_address",
        )
    )  # fmt: skip
    for contract_id, block_id, prefix, first, last in rows:
        blocks.setdefault(contract_id, []).append((block_id, prefix, last - first + 1))
    return blocks


def _bill_chunk(
    contract_ids: list[int], *, today: datetime.date, actor: Actor
) -> tuple[list[int], list[int]]:
    """The chunk path (PostgreSQL): a fixed number of statements per chunk, none per invoice.

    Reads: the contracts (locked) with their customers, their blocks, the tax rates in
    force today, which of the customers have credit. Writes, as plain row tuples: lines, tax
    rows and the "draft" audit entries (COPY), the contracts' next billing dates, the
    invoices into a session-local staging table (COPY); then last one statement takes the
    numbers (the counter's row lock, which every other issuer waits for until this commit),
    moves the staged invoices into the invoice table with them (each row written there
    once, complete) and writes the "open" audit entries. One message after commit names
    all the invoices (signals.invoices_issued).

    Returns (invoice ids issued, contract ids to bill alone): contracts whose customer has
    credit in the currency (applying it locks the balance and writes a ledger), whose
    invoice would total zero (settled at once), or whose invoice cannot be finalised (no
    blocks, no tax rate: the per-contract path reports why).
    """
    with transaction.atomic():
        contracts = list(
            LeaseContract.objects.select_for_update(of=("self",))
            .select_related("customer")
            .filter(pk__in=contract_ids, next_billing_date__lte=today)
            .exclude(status=ContractStatus.CANCELLED)
            .order_by("pk")
        )
        if not contracts:
            return [], []
        blocks = _blocks_of([c.pk for c in contracts])
        rates = RatesOn(today)
        with_credit = set(
            CustomerBalance.objects.filter(
                customer_id__in={c.customer_id for c in contracts}, amount__gt=0
            ).values_list("customer_id", "currency")
        )
        now = timezone.now()
        planned: list[_Planned] = []
        billed: list[LeaseContract] = []
        alone: list[int] = []
        for contract in contracts:
            if (contract.customer_id, contract.currency) in with_credit:
                alone.append(contract.pk)
                continue
            try:
                periods = _plan_contract(contract, blocks.get(contract.pk, []), today=today,
                                         rates=rates, now=now)  # fmt: skip
            except DomainError:
                periods = None
            if periods is None:
                alone.append(contract.pk)
                continue
            planned.extend(periods)
            contract.next_billing_date = periods[-1].period.end + datetime.timedelta(days=1)
            billed.append(contract)
        if not planned:
            return [], alone
        ids = _reserve_invoice_ids(len(planned))
        rows = _chunk_rows(planned, ids, blocks, actor=actor, now=now)
        copy_rows(InvoiceLine._meta.db_table, rows.line_columns, rows.lines)
        copy_rows(InvoiceTax._meta.db_table, rows.tax_columns, rows.taxes)
        audit_copy_many(rows.drafted)
        _move_next_billing_dates(billed, now=now)
        stage = _stage_invoices(rows.invoices)
        # Last: the numbers and the rows that carry them, in one statement; the counter's
        # row lock is held from its execution to the commit, with no Python in between.
        _issue_staged(stage, series=settings.INVOICE_NUMBER_SERIES, year=today.year,
                      actor=actor, now=now)  # fmt: skip
        # The chunk's one message: its worker tells the other apps (signals.invoices_issued).
        from . import tasks  # tasks import this module

        enqueue_on_commit(tasks.invoices_issued, ids)
    return ids, alone


def _plan_contract(
    contract: LeaseContract,
    blocks: list[tuple[int, str, int]],
    *,
    today: datetime.date,
    rates: RatesOn,
    now: datetime.datetime,
) -> list[_Planned] | None:
    """Every period of the contract due by `today`, as the values of its invoice row
    (finalised: what _plan_period + _price_and_snapshot compute on instances); None when
    one of them needs the per-contract path (no lines, a zero total)."""
    if not blocks:
        return None
    customer = contract.customer
    decision = tax_for_customer(customer, on=today, rates=rates)
    as_billed = _as_billed(customer, contract)  # once per contract, not per period
    due = today + datetime.timedelta(days=settings.PAYMENT_TERMS_DAYS)
    periods = []
    start = contract.next_billing_date
    while start <= today:
        period = _period_terms(contract, start)
        amount = quantize(period.unit_price)
        groups = tax_breakdown(((amount, decision.rate) for _ in blocks), decision)
        subtotal, tax, total = _totals(groups)
        if total == ZERO:
            return None
        invoice = {
            **as_billed,
            "customer_id": contract.customer_id,
            "contract_id": contract.pk,
            "currency": contract.currency,
            "period_start": period.start,
            "period_end": period.end,
            "billing_reason": period.billing_reason,
            "status": InvoiceStatus.OPEN,
            # As if drafted (version 1) and finalised (2), which the per-contract path does.
            "state_version": 2,
            "subtotal": subtotal,
            "tax": tax,
            "total": total,
            "tax_note": decision.note,
            "issue_date": today,
            "due_date": due,
            "created_at": now,
            "updated_at": now,
        }
        periods.append(_Planned(contract, period, invoice, amount, decision, groups))
        start = period.end + datetime.timedelta(days=1)
    return periods


def _chunk_rows(
    planned: list[_Planned], ids: list[int], blocks, *, actor: Actor, now: datetime.datetime
) -> _ChunkRows:
    make_invoice, _ = _row_maker(Invoice)
    make_line, line_columns = _row_maker(InvoiceLine, skip=("id",))
    make_tax, tax_columns = _row_maker(InvoiceTax, skip=("id",))
    invoice_type = ContentType.objects.get_for_model(Invoice)
    rows = _ChunkRows(line_columns=line_columns, tax_columns=tax_columns)
    for plan, pk in zip(planned, ids, strict=True):
        period, decision, amount = plan.period, plan.decision, plan.amount
        rows.invoices.append(make_invoice({**plan.invoice, "id": pk, "number": None}))
        for position, (block_id, prefix, size) in enumerate(blocks[plan.contract.pk]):
            rows.lines.append(make_line({
                "invoice_id": pk,
                "position": position,
                "description": period.line_description(prefix, size),
                "block_id": block_id,
                "period_start": period.start,
                "period_end": period.end,
                "quantity": Decimal("1"),
                "unit_price": period.unit_price,
                "amount": amount,
                "tax_rate": decision.rate,
            }))  # fmt: skip
        for g in plan.groups:
            rows.taxes.append(make_tax({
                "invoice_id": pk, "name": g.name, "rate": g.rate,
                "taxable_amount": g.taxable_amount, "amount": g.amount, "note": g.note,
            }))  # fmt: skip
        # The entry the per-contract path writes when it drafts (the draft's subtotal is
        # the lines' sum, before tax: the taxable amount).
        rows.drafted.append(
            audit_row(
                actor=actor,
                action="invoice.draft_created",
                content_type=invoice_type,
                object_id=pk,
                object_repr=f"Draft #{pk}",
                customer_id=plan.contract.customer_id,
                after={"period_start": period.start, "subtotal": plan.invoice["subtotal"]},
                at=now,
            )
        )
    return rows


_STAGE_MAX_BYTES = 4 * 1024 * 1024


def _stage_invoices(rows: list[tuple]) -> str:
    """COPY the chunk's invoices (unnumbered) into a temporary table of this session, named
    after the invoice table's columns so a schema change gets a fresh one. _issue_staged
    empties it in the same transaction, so nothing is left for the next chunk.

    A temporary table is never vacuumed: the deleted rows' pages are not reused (~30 kB a
    chunk), so once it passes _STAGE_MAX_BYTES it is truncated (~7 ms, every ~140 chunks)
    rather than left to grow with the session. Created per session, not per transaction
    (ON COMMIT DROP cost 1.8 ms a chunk), in the transaction that uses it (safe behind a
    transaction-pooling proxy)."""
    columns = [f.column for f in _fields(Invoice)]
    stage = f"billing_stage_{zlib.crc32(','.join(columns).encode()):08x}"
    with connection.cursor() as cursor:
        cursor.execute(
            f"DO $$ BEGIN "
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {Invoice._meta.db_table}); "
            f"IF pg_relation_size('{stage}') > {_STAGE_MAX_BYTES} THEN TRUNCATE {stage}; END IF; "
            f"END $$"
        )
    copy_rows(stage, columns, rows)
    return stage


def _issue_staged(stage: str, *, series: str, year: int, actor: Actor, now) -> None:
    """Number the staged invoices, write them, and write their "open" audit entries: one
    statement, so the counter's row lock (taken in it, held to the commit) covers no
    round trip but the commit's.

    Numbers follow the invoice ids (reserved in the chunk's order), consecutive, formatted
    as numbering.format_number does. The "open" entries are the ones set_invoice_status
    writes for the per-contract path (before: draft and nothing paid; after: the status,
    amount paid and the finalising extras), built from the rows just written; a test
    compares the two paths' entries field by field.
    """
    columns = [f.column for f in _fields(Invoice)]
    select = [numbering.NUMBER_SQL.format(sequence="seq") if c == "number" else c for c in columns]
    user, label = audit_actor(actor)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH staged AS (DELETE FROM {stage} RETURNING *),
            counter AS (
                INSERT INTO invoices_invoicenumbercounter (series, year, last_number)
                SELECT %(series)s, %(year)s, count(*) FROM staged
                ON CONFLICT (series, year) DO UPDATE
                SET last_number = invoices_invoicenumbercounter.last_number
                    + EXCLUDED.last_number
                RETURNING last_number
            ),
            numbered AS (
                SELECT s.*, c.last_number - count(*) OVER () + row_number() OVER (ORDER BY s.id)
                    AS seq
                FROM staged s CROSS JOIN counter c
            ),
            issued AS (
                INSERT INTO invoices_invoice ({", ".join(columns)})
                SELECT {", ".join(select)} FROM numbered ORDER BY id
                RETURNING id, number, customer_id, amount_paid, total, applied_balance,
                    currency, due_date
            )
            INSERT INTO core_auditentry (created_at, actor_id, actor_label, customer_id,
                action, content_type_id, object_id, object_repr, before, after, note)
            SELECT %(now)s, %(user)s, %(label)s, customer_id, %(action)s, %(type)s,
                id::text, number, %(before)s::jsonb,
                jsonb_build_object(
                    'status', %(status)s, 'amount_paid', amount_paid::text,
                    'number', number, 'total', total::text,
                    'applied_balance', applied_balance::text, 'currency', currency,
                    'due_date', to_char(due_date, 'YYYY-MM-DD')
                ),
                ''
            FROM issued ORDER BY id
            """,  # noqa: S608 - table and column names from the models; values are parameters
            {
                "series": series,
                "year": year,
                "prefix": numbering.format_number(series, year, 0)[:-6],
                "now": now,
                "user": user.pk if user else None,
                "label": label,
                "action": f"invoice.{InvoiceStatus.OPEN}",
                "type": ContentType.objects.get_for_model(Invoice).pk,
                "before": json.dumps(
                    audit_plain({"status": InvoiceStatus.DRAFT, "amount_paid": ZERO})
                ),
                "status": InvoiceStatus.OPEN,
            },
        )


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
