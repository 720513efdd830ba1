"""Credit notes: the one way to correct an issued invoice (it is never edited).

A credit note credits whole invoice lines, part of a line's (net) amount, or a free gross
amount, against one Open, Uncollectible, Paid or Refund invoice, in a gapless series of
its own (CN-YYYY-NNNNNN). Its tax is the original's reversed per rate: the tax credited at
a rate so far is always the original's rounding of the net credited so far at that rate,
so crediting a whole invoice, at once or in parts, gives back exactly the tax it charged,
to the cent, with the original's tax name and note (reverse charge, OSS, IGST).

What it credits goes, in this order, (1) off the invoice's amount remaining (an Open
invoice may become Paid by credit, or Void when it is fully credited before any money
came in), then (2) for money already received, to a refund to the original payment method
or to the customer's credit balance, as staff choose. Money that came from the customer's
credit balance always goes back there. The refund itself is sent by billing.payments,
which receives `credit_note_issued` after commit (invoices never import payments).
"""

import datetime
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from core.audit import Actor, audit_record
from core.errors import DomainError
from core.money import ZERO, quantize

from . import signals
from .balance import balance_move_locked, lock_balance
from .models import (
    PAYABLE_STATUSES,
    BalanceTransactionKind,
    CreditNote,
    CreditNoteLine,
    CreditNoteSettlement,
    CreditNoteTax,
    Invoice,
    InvoiceStatus,
)
from .numbering import allocate_invoice_number
from .services import (
    emit_after_commit,
    lock_invoice,
    restore_standing_if_settled,
    set_invoice_status,
)

CREDITABLE_STATUSES = frozenset(
    {InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID, InvoiceStatus.REFUND}
)


@dataclass(frozen=True)
class CreditLine:
    """Credit an invoice line: all that is left of it (amount None) or `amount` of it (net)."""

    invoice_line_id: int
    amount: Decimal | None = None


@dataclass
class _RateState:
    """One tax rate of the invoice: the original group and what earlier credit notes took."""

    name: str
    rate: Decimal
    note: str
    taxable: Decimal
    tax: Decimal
    credited_net: Decimal = ZERO
    credited_tax: Decimal = ZERO

    @property
    def net_left(self) -> Decimal:
        return self.taxable - self.credited_net

    @property
    def gross_left(self) -> Decimal:
        return self.net_left + self.tax - self.credited_tax

    def tax_for(self, net: Decimal) -> Decimal:
        """The tax on `net` more at this rate: the original's rounding of the running net."""
        running = self.credited_net + net
        if running == self.taxable:
            return self.tax - self.credited_tax
        return quantize(running * self.rate / 100) - self.credited_tax


def _money(value, *, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise DomainError(f"{what} must be an amount such as 12.50.", code="amount") from None
    if not amount.is_finite() or amount <= 0 or amount != quantize(amount):
        raise DomainError(
            f"{what} must be more than zero, with at most two decimals.", code="amount"
        )
    return amount


def _rates(invoice: Invoice) -> dict[Decimal, _RateState]:
    states = {
        t.rate: _RateState(t.name, t.rate, t.note, t.taxable_amount, t.amount)
        for t in invoice.tax_lines.all()
    }
    earlier = (
        CreditNoteTax.objects.filter(credit_note__invoice=invoice)
        .values("rate")
        .annotate(net=Sum("taxable_amount"), tax=Sum("amount"))
    )
    for row in earlier:
        state = states[row["rate"]]
        state.credited_net, state.credited_tax = row["net"], row["tax"]
    return states


def _line_credits(
    invoice: Invoice, lines: Sequence[CreditLine]
) -> list[tuple[CreditNoteLine, Decimal]]:
    """(unsaved credit note line, its rate) for each requested line, checked against what
    earlier credit notes took of it."""
    by_id = {line.pk: line for line in invoice.lines.all()}
    credited = dict(
        CreditNoteLine.objects.filter(invoice_line__invoice=invoice)
        .values_list("invoice_line")
        .annotate(total=Sum("amount"))
    )
    seen: set[int] = set()
    out = []
    for position, spec in enumerate(lines):
        line = by_id.get(spec.invoice_line_id)
        if line is None:
            raise DomainError(
                f"Line {spec.invoice_line_id} is not a line of invoice {invoice.number}.",
                code="credit_line",
            )
        if line.pk in seen:
            raise DomainError(f"Line {line.description!r} is named twice.", code="credit_line")
        seen.add(line.pk)
        left = line.amount - credited.get(line.pk, ZERO)
        if left <= 0:
            raise DomainError(
                f"Line {line.description!r} is already credited in full.", code="credit_exceeds"
            )
        amount = left if spec.amount is None else _money(spec.amount, what="A line's amount")
        if amount > left:
            raise DomainError(
                f"Only {left} {invoice.currency} of line {line.description!r} is left to "
                f"credit; {amount} {invoice.currency} was asked.",
                code="credit_exceeds",
            )
        description = line.description if amount == line.amount else f"Part of: {line.description}"
        out.append(
            (
                CreditNoteLine(
                    invoice_line=line,
                    position=position,
                    description=description[:500],
                    amount=amount,
                    tax_rate=line.tax_rate,
                ),
                line.tax_rate,
            )
        )
    return out


def _free_credits(
    invoice: Invoice, amount: Decimal, rates: dict[Decimal, _RateState]
) -> list[tuple[CreditNoteLine, Decimal, Decimal]]:
    """A free gross amount split over the invoice's rates in proportion to what is left at
    each: (line, rate, its tax), with net + tax equal to the amount asked."""
    open_rates = [s for s in sorted(rates.values(), key=lambda s: -s.rate) if s.gross_left > 0]
    left_total = sum((s.gross_left for s in open_rates), ZERO)
    parts: list[tuple[_RateState, Decimal]] = []
    remaining = amount
    for i, state in enumerate(open_rates):
        part = (
            remaining
            if i == len(open_rates) - 1
            else min(quantize(amount * state.gross_left / left_total), state.gross_left)
        )
        remaining -= part
        if part > 0:
            parts.append((state, part))
    out = []
    several = len(parts) > 1
    for position, (state, gross) in enumerate(parts):
        net = _net_for_gross(state, gross)
        description = f"Credit on invoice {invoice.number}"
        if several:
            description += f" ({state.name} {state.rate.normalize():f}%)"
        out.append(
            (
                CreditNoteLine(
                    position=position, description=description, amount=net, tax_rate=state.rate
                ),
                state.rate,
                gross - net,
            )
        )
    return out


def _net_for_gross(state: _RateState, gross: Decimal) -> Decimal:
    """The net whose reversed tax at this rate makes exactly `gross`, or the nearest below."""
    if gross == state.gross_left:
        return state.net_left
    guess = quantize(gross * 100 / (100 + state.rate))
    cent = Decimal("0.01")
    for net in (guess, guess - cent, guess + cent, guess - 2 * cent, guess + 2 * cent):
        if 0 < net <= state.net_left and net + state.tax_for(net) == gross:
            return net
    # A cent the rounding cannot reach: the tax takes it (still within the rate's tax left).
    return min(guess, state.net_left)


def _refunded_by_credit_notes(invoice: Invoice) -> Decimal:
    return invoice.credit_notes.aggregate(s=Sum("refund_amount"))["s"] or ZERO


def credit_note_issue(
    *,
    invoice_id: int,
    reason: str,
    settle: str,
    actor: Actor,
    lines: Sequence[CreditLine] = (),
    amount: Decimal | None = None,
    idempotency_key: str | None = None,
    today: datetime.date | None = None,
    now: datetime.datetime | None = None,
) -> CreditNote:
    """Issue a credit note against an issued invoice and apply what it credits.

    Exactly one of `lines` (whole lines or net parts of them) and `amount` (a free gross
    amount, split over the invoice's tax rates). `settle` ("refund" or "credit") says where
    money already received goes; money that came from the customer's credit balance goes
    back there either way. Refused, with nothing changed: a draft or void invoice, more
    than the invoice's total less earlier credit notes, a line credited beyond its amount.

    Idempotent with `idempotency_key`: the credit note already issued under that key for
    this invoice is returned as it is (a double-clicked form, a retried task).
    """
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Give the reason for the credit note; it is printed on it.")
    if settle not in CreditNoteSettlement.values:
        raise DomainError(
            "Choose where money already paid goes: refund or credit.", code="settlement"
        )
    if bool(lines) == (amount is not None):
        raise DomainError(
            "Credit either invoice lines or a free amount (one of the two).", code="credit_what"
        )
    now = now or timezone.now()
    today = today or timezone.localdate()
    with transaction.atomic():
        invoice = lock_invoice(invoice_id)
        if idempotency_key:
            done = CreditNote.objects.filter(idempotency_key=idempotency_key).first()
            if done is not None:
                if done.invoice_id != invoice.pk:
                    raise DomainError(
                        "That request key was used for another invoice's credit note.",
                        code="idempotency",
                    )
                return done
        if invoice.status not in CREDITABLE_STATUSES:
            raise DomainError(
                f"Invoice {invoice} is {invoice.get_status_display().lower()}; only an issued "
                "invoice (open, paid, refunded or written off) can be credited.",
                code="credit_state",
            )
        rates = _rates(invoice)
        if lines:
            line_rows = _line_credits(invoice, lines)
            per_rate: dict[Decimal, Decimal] = defaultdict(lambda: ZERO)
            for row, rate in line_rows:
                per_rate[rate] += row.amount
            for rate, net in per_rate.items():
                if net > rates[rate].net_left:
                    raise DomainError(
                        f"Only {rates[rate].net_left} {invoice.currency} net at "
                        f"{rate.normalize():f}% is left to credit on invoice {invoice}.",
                        code="credit_exceeds",
                    )
            taxes = {rate: rates[rate].tax_for(net) for rate, net in per_rate.items()}
            new_lines = [row for row, _rate in line_rows]
        else:
            gross = _money(amount, what="The amount")
            if gross > invoice.amount_creditable:
                raise _too_much(invoice, gross)
            free = _free_credits(invoice, gross, rates)
            per_rate = defaultdict(lambda: ZERO)
            taxes = defaultdict(lambda: ZERO)
            for row, rate, tax in free:
                per_rate[rate] += row.amount
                taxes[rate] += tax
            new_lines = [row for row, _rate, _tax in free]
        subtotal = sum(per_rate.values(), ZERO)
        tax = sum(taxes.values(), ZERO)
        total = subtotal + tax
        if total > invoice.amount_creditable:
            raise _too_much(invoice, total)

        # (1) off what is still owed, (2) money received: refund or credit balance.
        remaining = invoice.amount_remaining if invoice.status in PAYABLE_STATUSES else ZERO
        pre = min(total, remaining)
        post = total - pre
        received = (
            invoice.amount_paid
            + invoice.applied_balance
            - invoice.amount_refunded
            - invoice.post_payment_credit_notes_amount
        )
        if post > received:
            raise DomainError(
                f"Only {max(received, ZERO)} {invoice.currency} of what was paid for invoice "
                f"{invoice} is still with us (the rest was refunded); this credit note would "
                f"credit {post} {invoice.currency} of it.",
                code="credit_exceeds",
            )
        refund = ZERO
        if settle == CreditNoteSettlement.REFUND and post:
            card_money = (
                invoice.amount_paid - invoice.amount_refunded - _refunded_by_credit_notes(invoice)
            )
            refund = min(post, max(card_money, ZERO))
        credit = post - refund

        note = CreditNote(
            number=allocate_invoice_number(
                series=settings.CREDIT_NOTE_NUMBER_SERIES, year=today.year
            ),
            invoice=invoice,
            customer=invoice.customer,
            currency=invoice.currency,
            issue_date=today,
            reason=reason[:500],
            settlement=settle,
            subtotal=subtotal,
            tax=tax,
            total=total,
            pre_payment_amount=pre,
            refund_amount=refund,
            credit_amount=credit,
            tax_note=invoice.tax_note,
            idempotency_key=idempotency_key or None,
            refund_handled_at=None if refund else now,
        )
        try:
            with transaction.atomic():
                note.save()
        except IntegrityError:
            # The same key raced us: the other request issued it (and took the number back).
            raise DomainError(
                "This credit note is being issued by another request; reload to see it.",
                code="idempotency",
            ) from None
        for row in new_lines:
            row.credit_note = note
        CreditNoteLine.objects.bulk_create(new_lines)
        CreditNoteTax.objects.bulk_create(
            CreditNoteTax(
                credit_note=note,
                name=rates[rate].name,
                rate=rate,
                taxable_amount=net,
                amount=taxes[rate],
                note=rates[rate].note,
            )
            for rate, net in sorted(per_rate.items(), reverse=True)
        )
        audit_record(
            actor=actor,
            action="credit_note.issued",
            target=note,
            customer=invoice.customer,
            after={
                "invoice": invoice.number,
                "total": total,
                "tax": tax,
                "pre_payment": pre,
                "refund": refund,
                "credit": credit,
            },
            note=reason,
        )
        _apply_to_invoice(invoice, note, actor=actor, now=now)
        if credit:
            balance_move_locked(
                lock_balance(invoice.customer_id, invoice.currency),
                amount=credit,
                kind=BalanceTransactionKind.CREDIT_NOTE,
                actor=actor,
                customer=invoice.customer,
                invoice=invoice,
                credit_note=note,
                note=f"Credit note {note.number}",
            )
        emit_after_commit(signals.credit_note_issued, credit_note_id=note.pk)
    return note


def _too_much(invoice: Invoice, asked: Decimal) -> DomainError:
    return DomainError(
        f"Only {invoice.amount_creditable} {invoice.currency} of invoice {invoice} is left to "
        f"credit (its total less earlier credit notes); this credit note would credit "
        f"{asked} {invoice.currency}.",
        code="credit_exceeds",
    )


def _apply_to_invoice(
    invoice: Invoice, note: CreditNote, *, actor: Actor, now: datetime.datetime
) -> None:
    invoice.pre_payment_credit_notes_amount += note.pre_payment_amount
    invoice.post_payment_credit_notes_amount += note.post_payment_amount
    audit_record(
        actor=actor,
        action="invoice.credited",
        target=invoice,
        customer=invoice.customer,
        after={
            "credit_note": note.number,
            "pre_payment_credit_notes_amount": invoice.pre_payment_credit_notes_amount,
            "post_payment_credit_notes_amount": invoice.post_payment_credit_notes_amount,
        },
        note=note.reason,
    )
    settled = invoice.status in PAYABLE_STATUSES and invoice.amount_remaining == ZERO
    if not settled:
        invoice.state_version += 1
        invoice.save()
        return
    nothing_received = invoice.amount_paid == ZERO and invoice.applied_balance == ZERO
    set_invoice_status(
        invoice,
        InvoiceStatus.VOID if nothing_received else InvoiceStatus.PAID,
        actor=actor,
        now=now,
        note=f"credit note {note.number}",
        extra={"credit_note": note.number},
    )
    restore_standing_if_settled(invoice, actor=actor, today=now.date())
