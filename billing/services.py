"""Writes for invoices and payments: the only code that moves money state.

Every service owns its transaction, locks the invoice row (always the invoice
before its payments, so two services never deadlock), re-checks state under the
lock, is safe to call again, and leaves an audit entry. Domain events go out
through billing.signals after commit.
"""

import datetime
import enum
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.mail import mail_admins
from django.db import DatabaseError, transaction
from django.dispatch import Signal
from django.utils import timezone

from contracts.audit import Actor, audit_record
from contracts.errors import DomainError, check_transition
from contracts.models import ContractStatus, LeaseContract
from contracts.periods import add_months, period_for
from contracts.services import contract_restore

from . import selectors, signals
from .models import (
    INVOICE_TRANSITIONS,
    PAYABLE_STATUSES,
    PAYMENT_TRANSITIONS,
    BillingReason,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceTax,
    Payment,
    PaymentKind,
    PaymentStatus,
    Refund,
    RefundStatus,
    overdue_q,
)
from .money import ZERO, quantize
from .numbering import allocate_invoice_number
from .providers import known_customer_ref
from .tax import tax_breakdown, tax_for

logger = logging.getLogger(__name__)

BILLING_RUN = "billing run"

_STATUS_TIMESTAMPS = {
    InvoiceStatus.PAID: "paid_at",
    InvoiceStatus.VOID: "voided_at",
    InvoiceStatus.REFUND: "refunded_at",
    InvoiceStatus.UNCOLLECTIBLE: "marked_uncollectible_at",
}


def _emit_after_commit(signal: Signal, **kwargs) -> None:
    def send() -> None:
        for receiver, result in signal.send_robust(sender=Invoice, **kwargs):
            if isinstance(result, Exception):
                logger.error("receiver %r failed for %s", receiver, kwargs, exc_info=result)

    transaction.on_commit(send)


def _invoice_list_changed(invoice: Invoice) -> None:
    """The customer's cached list counts and summary cards are stale once this commits.

    Bumped now (so this transaction's own later reads, and tests, see fresh numbers) and
    again after commit: a concurrent reader that cached the old numbers in between did so
    under the intermediate version, which the second bump abandons.
    """
    customer_id = invoice.customer_id
    selectors.invoice_list_changed(customer_id)
    transaction.on_commit(lambda: selectors.invoice_list_changed(customer_id))


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


def lock_invoice_to_pay(invoice_id: int) -> Invoice:
    """lock_invoice for a caller that decides on the contract's status (may it be paid?).

    lock_invoice reads the joined contract as of its statement's start, before it waited
    for the lock: behind grace enforcement (which cancels the contract while holding the
    invoice lock and never writes the invoice) it would still see the contract live. Read
    again once the lock is ours, the contract shows what enforcement committed. A plain
    read, not a lock: the contract row stays free, so this adds no lock order to keep.
    """
    invoice = lock_invoice(invoice_id)
    if invoice.contract_id:
        invoice.contract = LeaseContract.objects.get(pk=invoice.contract_id)
    return invoice


def _set_invoice_status(
    invoice: Invoice,
    target: str,
    *,
    actor: Actor,
    now: datetime.datetime | None = None,
    note: str = "",
    extra: dict | None = None,
) -> None:
    """The one place an invoice's status is written. Caller holds the row lock."""
    check_transition(
        INVOICE_TRANSITIONS, label=f"Invoice {invoice}", current=invoice.status, target=target
    )
    before = {"status": invoice.status, "amount_paid": invoice.amount_paid}
    old = invoice.status
    invoice.status = target
    stamp = _STATUS_TIMESTAMPS.get(target)
    if stamp:
        setattr(invoice, stamp, now or timezone.now())
    invoice.state_version += 1
    invoice.save()
    _invoice_list_changed(invoice)
    audit_record(
        actor=actor,
        action=f"invoice.{target}",
        target=invoice,
        customer=invoice.customer,
        before=before,
        after={"status": target, "amount_paid": invoice.amount_paid, **(extra or {})},
        note=note,
    )
    _emit_after_commit(
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
    _invoice_list_changed(invoice)
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
    number of contracts due today, not the size of the table. Each contract is billed in
    its own transaction: one bad contract is reported and does not stop the others.
    """
    today = today or timezone.localdate()
    result = BillingRunResult()
    due = LeaseContract.objects.filter(
        status__in=[ContractStatus.ACTIVE, ContractStatus.PAST_DUE], next_billing_date__lte=today
    ).values_list("pk", flat=True)
    for contract_id in due.iterator(chunk_size=1000):
        try:
            invoices = contract_bill_due_periods(contract_id=contract_id, today=today, actor=actor)
        except DomainError as exc:
            logger.error("billing run: contract %s not billed: %s", contract_id, exc.message)
            result.errors[contract_id] = exc.message
            continue
        except DatabaseError as exc:
            # A deadlock or lost lock rolls back this contract only; the next run bills it.
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
    decision = tax_for(country=customer.country, tax_id=customer.tax_id, on=today)
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
    _set_invoice_status(
        invoice,
        InvoiceStatus.OPEN,
        actor=actor,
        extra={"number": invoice.number, "total": invoice.total, "due_date": invoice.due_date},
    )
    if invoice.total == ZERO:
        # Nothing to collect: settle at once, as Stripe does with zero-amount invoices.
        invoice.paid_out_of_band = True
        _set_invoice_status(invoice, InvoiceStatus.PAID, actor=actor, note="zero total")
    _emit_after_commit(signals.invoice_finalized, invoice_id=invoice.pk)
    return invoice


def invoice_finalize(
    *, invoice_id: int, actor: Actor, today: datetime.date | None = None
) -> Invoice:
    """Draft -> Open: taxes, gapless number, issue and due dates. Refuses a non-draft."""
    with transaction.atomic():
        invoice = lock_invoice(invoice_id)
        return _finalize_locked(invoice, actor=actor, today=today or timezone.localdate())


def invoice_void(*, invoice_id: int, actor: Actor, reason: str = "") -> Invoice:
    """Draft/Open/Uncollectible -> Void. An invoice with money on it cannot be voided."""
    with transaction.atomic():
        invoice = lock_invoice(invoice_id)
        if invoice.status == InvoiceStatus.VOID:
            return invoice
        if invoice.amount_paid > 0:
            raise DomainError(
                f"Invoice {invoice} has payments on it; refund them instead of voiding.",
                code="has_payments",
            )
        _set_invoice_status(invoice, InvoiceStatus.VOID, actor=actor, note=reason)
        # Nothing is owed on it any more: the contract may be back in good standing.
        _restore_standing_if_settled(invoice, actor=actor, today=timezone.localdate())
    return invoice


def invoice_mark_uncollectible(*, invoice_id: int, actor: Actor, reason: str = "") -> Invoice:
    """Open -> Uncollectible (written off by staff; a later payment still settles it)."""
    with transaction.atomic():
        invoice = lock_invoice(invoice_id)
        if invoice.status == InvoiceStatus.UNCOLLECTIBLE:
            return invoice
        _set_invoice_status(invoice, InvoiceStatus.UNCOLLECTIBLE, actor=actor, note=reason)
        _restore_standing_if_settled(invoice, actor=actor, today=timezone.localdate())
    return invoice


# --- Payments -----------------------------------------------------------------------


def invoice_check_payable_online(invoice: Invoice, *, open_only: bool = False) -> None:
    """Raise DomainError (safe to show) unless the invoice may be paid online now.

    open_only: an Uncollectible invoice (written off by staff) is payable when the
    customer asks, but never charged unasked.
    """
    if invoice.contract_id and invoice.contract.status == ContractStatus.CANCELLED:
        raise DomainError(
            f"The contract of invoice {invoice} is cancelled; please contact us to pay it.",
            code="invoice_not_payable",
        )
    if not invoice.is_payable or (open_only and invoice.status != InvoiceStatus.OPEN):
        raise DomainError(
            f"Invoice {invoice} is {invoice.get_status_display().lower()} and cannot be paid.",
            code="invoice_not_payable",
        )


def payment_create(
    *,
    invoice_id: int,
    provider: str,
    kind: str,
    actor: Actor,
    idempotency_key: str | None = None,
) -> Payment:
    """Record a new attempt to collect the invoice's amount_remaining."""
    with transaction.atomic():
        invoice = lock_invoice(invoice_id)
        if not invoice.is_payable:
            raise DomainError(
                f"Invoice {invoice} is {invoice.get_status_display().lower()} and cannot be paid.",
                code="invoice_not_payable",
            )
        attempt = invoice.payments.filter(kind=kind).count() + 1
        payment = Payment.objects.create(
            invoice=invoice,
            provider=provider,
            kind=kind,
            amount=invoice.amount_remaining,
            currency=invoice.currency,
            attempt=attempt,
            idempotency_key=idempotency_key or f"invoice-{invoice.pk}-{kind}-{attempt}",
        )
        audit_record(
            actor=actor,
            action="payment.created",
            target=payment,
            customer=invoice.customer,
            after={"amount": payment.amount, "kind": kind, "attempt": attempt},
        )
    return payment


# Charges of a saved payment method: only one may be under way per invoice at a time.
SAVED_METHOD_KINDS = (PaymentKind.AUTOMATIC, PaymentKind.API)
_UNDER_WAY = (PaymentStatus.PENDING, PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION)


def payment_start_saved_method_charge(
    *, invoice_id: int, provider: str, kind: str, actor: Actor, idempotency_key: str | None = None
) -> Payment:
    """The attempt to send to the provider, decided under the invoice's row lock.

    A pending attempt (its worker died, or the provider could not be reached and a timeout
    does not say whether it charged) is handed back to be sent again under its own
    idempotency key, so the provider answers with the same charge instead of a second
    one. While another charge is processing or waits for the customer, a new one is
    refused. Otherwise a new attempt is created.
    """
    with transaction.atomic():
        invoice = lock_invoice_to_pay(invoice_id)
        # Re-checked under the lock: staff may have written the invoice off, or the
        # contract may have been cancelled, since the caller looked. Nothing is charged
        # unasked unless the invoice is Open.
        invoice_check_payable_online(invoice, open_only=kind == PaymentKind.AUTOMATIC)
        under_way = (
            invoice.payments.filter(kind__in=SAVED_METHOD_KINDS, status__in=_UNDER_WAY)
            .order_by("-created_at")
            .first()
        )
        if under_way is not None:
            # Only the same kind of charge is resumed: another one (the customer's card
            # instead of the automatic default, on or off session) would reuse the
            # idempotency key with other parameters, which the provider refuses.
            resumable = (
                under_way.status == PaymentStatus.PENDING
                and under_way.kind == kind
                and under_way.amount == invoice.amount_remaining
                and idempotency_key in (None, under_way.idempotency_key)
            )
            if resumable:
                return under_way
            raise DomainError(
                f"A payment for invoice {invoice} is already under way; "
                "it is confirmed or released within minutes.",
                code="payment_in_progress",
            )
        return payment_create(
            invoice_id=invoice.pk,
            provider=provider,
            kind=kind,
            actor=actor,
            idempotency_key=idempotency_key,
        )


def lock_payment(payment_id: int) -> tuple[Invoice, Payment]:
    """Lock the payment's invoice, then the payment (the one lock order)."""
    invoice_id = Payment.objects.values_list("invoice_id", flat=True).get(pk=payment_id)
    invoice = lock_invoice(invoice_id)
    return invoice, Payment.objects.select_for_update().get(pk=payment_id)


def payment_set_status(payment: Payment, target: str, *, actor: Actor, customer, note="") -> None:
    """The one place a payment's status is written: transition table, save, audit entry.
    The caller holds the locks (lock_payment)."""
    check_transition(
        PAYMENT_TRANSITIONS, label=f"Payment {payment.pk}", current=payment.status, target=target
    )
    before = payment.status
    payment.status = target
    payment.save()
    audit_record(
        actor=actor,
        action=f"payment.{target}",
        target=payment,
        customer=customer,
        before={"status": before},
        after={"status": target, "amount": payment.amount, "refunded": payment.amount_refunded},
        note=note,
    )


def _restore_standing_if_settled(invoice: Invoice, *, actor: Actor, today: datetime.date) -> None:
    if not invoice.contract_id:
        return
    still_overdue = Invoice.objects.filter(
        overdue_q(today), contract_id=invoice.contract_id
    ).exists()
    if not still_overdue:
        contract_restore(contract_id=invoice.contract_id, actor=actor)


class Received(enum.Enum):
    """payment_record_success's default: the money is exactly what the payment asked for."""

    AS_REQUESTED = "as requested"


AS_REQUESTED = Received.AS_REQUESTED

# A payment in one of these has had its money recorded; a later success event changes nothing.
MONEY_RECORDED = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED, PaymentStatus.HELD)


def _alert_staff_after_commit(subject: str, body: str) -> None:
    def send() -> None:
        logger.error("STAFF: %s", subject)
        try:
            mail_admins(subject, body)
        except Exception:
            # The held payment itself is the record staff work from; a lost mail loses nothing.
            logger.exception("STAFF: the alert mail was not sent: %s", subject)

    transaction.on_commit(send)


def _hold_reason(
    invoice: Invoice, payment: Payment, *, amount: Decimal | None, currency: str, payer: str
) -> str:
    """Why the money the provider reported cannot be credited to the invoice ("" if it can)."""
    if amount is None:
        return "The provider did not say how much it received."
    if amount <= 0:
        return "The provider reported nothing received."
    if currency != invoice.currency.upper():
        return (
            f"Received {amount} {currency or '(no currency)'} for an invoice in {invoice.currency}."
        )
    if payer:
        expected = known_customer_ref(provider=payment.provider, customer=invoice.customer)
        if payer != expected:
            return (
                f"Paid by {payer} at {payment.provider}, not by the invoice's customer "
                f"({expected or 'none on record'})."
            )
    return ""


def payment_record_success(
    *,
    payment_id: int,
    actor: Actor,
    amount_received: Decimal | None | Received = AS_REQUESTED,
    currency_received: str = "",
    provider_customer_id: str = "",
    provider_payment_id: str | None = None,
    provider_charge_id: str = "",
    brand: str = "",
    last4: str = "",
    now: datetime.datetime | None = None,
) -> Payment:
    """The provider took the money. Credits what it received to the invoice exactly once.

    amount_received/currency_received are what the provider reported (None: it did not say);
    provider_customer_id is the payer it named. Only a caller that took the money itself,
    synchronously, for exactly what was asked (staff recording a transfer) leaves them out.

    Credited only in the invoice's currency and up to what it still owes: a short payment
    leaves the rest due; money it no longer owes (excess, or an invoice already settled) is
    handed back through `payment_needs_refund`. Another currency, another payer or an
    unknown amount is held for staff (status Held, credited to nothing, staff alerted).
    Quietly returns when the payment's money is already recorded (succeeded, refunded, held).
    """
    now = now or timezone.now()
    with transaction.atomic():
        invoice, payment = lock_payment(payment_id)
        if payment.status in MONEY_RECORDED:
            return payment
        if amount_received is AS_REQUESTED:
            amount_received, currency_received = payment.amount, payment.currency
        payment.provider_payment_id = provider_payment_id or payment.provider_payment_id
        payment.provider_charge_id = provider_charge_id or payment.provider_charge_id
        payment.method_brand = brand or payment.method_brand
        payment.method_last4 = last4 or payment.method_last4
        payment.succeeded_at = now
        payment.amount_received = None if amount_received is None else quantize(amount_received)
        payment.currency_received = currency_received.upper()[:3]
        reason = _hold_reason(
            invoice,
            payment,
            amount=payment.amount_received,
            currency=payment.currency_received,
            payer=provider_customer_id,
        )
        if reason:
            payment.held_reason = reason[:300]
            payment_set_status(
                payment, PaymentStatus.HELD, actor=actor, customer=invoice.customer, note=reason
            )
            _alert_staff_after_commit(
                f"Payment {payment.pk} for invoice {invoice} is held",
                f"{reason}\n\nNothing was credited to invoice {invoice}. Asked: {payment.amount} "
                f"{payment.currency}. Received: {payment.amount_received} "
                f"{payment.currency_received or '?'}. Provider: {payment.provider} "
                f"{payment.provider_payment_id or payment.provider_charge_id or ''}.\n"
                "Refund it from the payment's admin page (action: refund held payments).",
            )
            return payment
        received = payment.amount_received
        applied = min(received, invoice.amount_remaining) if invoice.is_payable else ZERO
        excess = received - applied
        payment.is_duplicate = applied == ZERO
        payment_set_status(payment, PaymentStatus.SUCCEEDED, actor=actor, customer=invoice.customer)
        if applied:
            invoice.amount_paid += applied
            if invoice.amount_paid == invoice.total:
                invoice.paid_out_of_band = payment.kind == PaymentKind.OUT_OF_BAND
                _set_invoice_status(
                    invoice, InvoiceStatus.PAID, actor=actor, now=now, extra={"payment": payment.pk}
                )
                _restore_standing_if_settled(invoice, actor=actor, today=now.date())
            else:
                invoice.state_version += 1
                invoice.save(update_fields=["amount_paid", "state_version", "updated_at"])
                _invoice_list_changed(invoice)
                audit_record(
                    actor=actor,
                    action="payment.short",
                    target=payment,
                    customer=invoice.customer,
                    after={"received": received, "remaining": invoice.amount_remaining},
                    note="Less arrived than the invoice owes; the rest is still due.",
                )
        if excess:
            audit_record(
                actor=actor,
                action="payment.excess",
                target=payment,
                customer=invoice.customer,
                after={"excess": excess, "invoice_status": invoice.status},
                note="Money arrived that the invoice no longer owed; it is refunded.",
            )
            _emit_after_commit(signals.payment_needs_refund, payment_id=payment.pk, amount=excess)
    return payment


def payment_record_failure(
    *,
    payment_id: int,
    actor: Actor,
    code: str,
    message: str,
    requires_action: bool = False,
    now: datetime.datetime | None = None,
) -> Payment:
    """The attempt failed (or needs the customer). The invoice stays Open.

    Quietly ignored when the payment already reached a final state: a late failure
    event never undoes a success.
    """
    target = PaymentStatus.REQUIRES_ACTION if requires_action else PaymentStatus.FAILED
    with transaction.atomic():
        invoice, payment = lock_payment(payment_id)
        if payment.status == target or target not in PAYMENT_TRANSITIONS[payment.status]:
            return payment
        payment.failure_code = code[:64]
        payment.failure_message = message[:300]
        payment.failed_at = now or timezone.now()
        payment_set_status(payment, target, actor=actor, customer=invoice.customer, note=message)
        _emit_after_commit(signals.payment_failed, payment_id=payment.pk)
    return payment


def refund_mark_failed(
    *, refund_id: int, actor: Actor, note: str = "", failure_reason: str = ""
) -> Refund:
    """The provider refused a refund we asked for: Pending -> Failed, once, audited.

    A refund that succeeded meanwhile (its confirmation came first) stays as it is.
    """
    payment_id = Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id)
    with transaction.atomic():
        invoice, _payment = lock_payment(payment_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != RefundStatus.PENDING:
            return refund
        _refund_fail_locked(invoice, refund, actor=actor, note=note, failure_reason=failure_reason)
    return refund


def _refund_fail_locked(
    invoice: Invoice,
    refund: Refund,
    *,
    actor: Actor,
    note: str,
    failure_reason: str = "",
    now: datetime.datetime | None = None,
) -> None:
    """Write the Failed status and its audit entry (caller holds the locks)."""
    before = {"status": refund.status} if refund.pk else {}
    refund.status = RefundStatus.FAILED
    refund.failure_reason = failure_reason[:100]
    refund.failed_at = now or timezone.now()
    refund.save()
    audit_record(
        actor=actor,
        action="refund.failed",
        target=refund,
        customer=invoice.customer,
        before=before,
        after={
            "status": RefundStatus.FAILED,
            "amount": refund.amount,
            "failure_reason": refund.failure_reason,
        },
        note=note,
    )


# The reason on a refund that someone made at the provider rather than through the portal.
PROVIDER_REFUND_REASON = "refunded at the provider"


def _unsent_refund_locked(payment: Payment, refund_id: int | None, amount: Decimal):
    """Our pending refund whose provider answer has not come back yet, re-checked under the
    payment's lock: the provider's event for it may arrive before refund_create returns."""
    if refund_id is None:
        return None
    return (
        Refund.objects.select_for_update()
        .filter(
            pk=refund_id,
            payment=payment,
            status=RefundStatus.PENDING,
            provider_refund_id__isnull=True,
            amount=amount,
        )
        .first()
    )


def refund_record_failure(
    *,
    payment_id: int,
    provider_refund_id: str,
    amount: Decimal,
    failure_reason: str,
    actor: Actor,
    placeholder_id: int | None = None,
    returns_excess: bool = False,
    now: datetime.datetime | None = None,
) -> Refund:
    """The processor says a refund failed or was cancelled. Recorded once per provider refund id.

    A pending refund becomes Failed and no longer holds back a new refund. A refund that had
    succeeded is undone, because the money came back to us: its amount goes back on the
    payment (Refunded -> Succeeded) and, unless it returned an excess, on the invoice (Refund
    -> Paid). A failure for a refund we never saw is kept as a Failed row. Failed is final
    at Stripe, so a success event that arrives after this one is stale and ignored
    (payment_record_refund). Staff are told after commit. Quiet when already Failed.
    `placeholder_id`: our unsent refund this one may be (see _unsent_refund_locked).
    """
    now = now or timezone.now()
    amount = quantize(amount)
    with transaction.atomic():
        invoice, payment = lock_payment(payment_id)
        refund = (
            Refund.objects.select_for_update().filter(provider_refund_id=provider_refund_id).first()
        ) or _unsent_refund_locked(payment, placeholder_id, amount)
        if refund is None:
            refund = Refund(
                payment=payment,
                amount=amount,
                reason=PROVIDER_REFUND_REASON,
                idempotency_key=f"refund-{provider_refund_id}",
            )
        elif refund.status == RefundStatus.FAILED:
            return refund
        was = refund.status if refund.pk else ""
        refund.provider_refund_id = provider_refund_id
        _refund_fail_locked(
            invoice,
            refund,
            actor=actor,
            note="the payment processor could not return the money",
            failure_reason=failure_reason,
            now=now,
        )
        if was == RefundStatus.SUCCEEDED:
            _refund_undo_locked(
                invoice, payment, refund, actor=actor, returns_excess=returns_excess, now=now
            )
        logger.error(
            "STAFF: refund %s (%s %s of payment %s, invoice %s) failed at the processor: %s%s",
            provider_refund_id,
            refund.amount,
            payment.currency,
            payment.pk,
            invoice,
            failure_reason,
            "; the money is back with us and the amount is owed to the customer again"
            if was == RefundStatus.SUCCEEDED
            else "",
        )
        _emit_after_commit(signals.refund_failed, refund_id=refund.pk)
    return refund


def _refund_undo_locked(
    invoice: Invoice,
    payment: Payment,
    refund: Refund,
    *,
    actor: Actor,
    returns_excess: bool,
    now: datetime.datetime,
) -> None:
    """Put a succeeded refund's amount back on the payment and the invoice (caller locks)."""
    payment.amount_refunded = max(ZERO, payment.amount_refunded - refund.amount)
    if payment.status == PaymentStatus.REFUNDED:
        # A held payment goes back on hold: its money still waits for staff.
        payment_set_status(
            payment,
            PaymentStatus.HELD if payment.held_reason else PaymentStatus.SUCCEEDED,
            actor=actor,
            customer=invoice.customer,
            note="a refund failed at the processor",
        )
    else:
        payment.save(update_fields=["amount_refunded", "updated_at"])
    if returns_excess or payment.is_duplicate or payment.held_reason:
        return
    if invoice.status in PAYABLE_STATUSES:
        # The refund had made this amount owed again (payment_record_refund): it is paid again,
        # up to what the invoice still owes; anything beyond is staff's to return.
        credit = min(refund.amount, invoice.amount_remaining)
        if credit < refund.amount:
            logger.error(
                "STAFF: %s of failed refund %s is back with us but invoice %s no longer owes it",
                refund.amount - credit,
                refund.pk,
                invoice,
            )
        invoice.amount_paid += credit
        if invoice.amount_paid == invoice.total:
            _set_invoice_status(
                invoice,
                InvoiceStatus.PAID,
                actor=actor,
                now=now,
                note="a refund failed at the processor",
                extra={"refund": refund.pk},
            )
            _restore_standing_if_settled(invoice, actor=actor, today=now.date())
        else:
            invoice.state_version += 1
            invoice.save(update_fields=["amount_paid", "state_version", "updated_at"])
            _invoice_list_changed(invoice)
        return
    invoice.amount_refunded = max(ZERO, invoice.amount_refunded - refund.amount)
    if invoice.status == InvoiceStatus.REFUND and invoice.amount_refunded < invoice.amount_paid:
        # Paid again from the day it was first paid: the payment never went anywhere.
        _set_invoice_status(
            invoice,
            InvoiceStatus.PAID,
            actor=actor,
            now=invoice.paid_at or now,
            note="a refund failed at the processor",
            extra={"amount_refunded": invoice.amount_refunded, "refund": refund.pk},
        )
    else:
        invoice.state_version += 1
        invoice.save(update_fields=["amount_refunded", "state_version", "updated_at"])
        _invoice_list_changed(invoice)


def payment_record_refund(
    *,
    payment_id: int,
    amount: Decimal,
    provider_refund_id: str,
    actor: Actor,
    reason: str = "",
    returns_excess: bool = False,
    placeholder_id: int | None = None,
    now: datetime.datetime | None = None,
) -> Refund:
    """The provider returned `amount` of a payment. Recorded once per provider refund id.

    A full refund of what an invoice was paid moves it to Refund; a partial one
    stays Paid with the refunded amount shown. Money handed back while the invoice is
    still payable (a short payment) is owed again. Returning a duplicate's money or an
    excess (`returns_excess`), or a held payment, does not touch the invoice it never paid.
    A refund already recorded as Failed stays so. `placeholder_id`: our pending refund
    whose provider answer has not come back yet; its row (and the staff's reason) is filled in.
    """
    now = now or timezone.now()
    amount = quantize(amount)
    with transaction.atomic():
        invoice, payment = lock_payment(payment_id)
        existing = Refund.objects.filter(provider_refund_id=provider_refund_id).first()
        if existing and existing.status == RefundStatus.SUCCEEDED:
            return existing
        if existing and existing.status == RefundStatus.FAILED:
            # Failed is final at Stripe: a success reported now is older than that failure.
            logger.info("refund %s already failed; stale success ignored", provider_refund_id)
            return existing
        if existing is None:
            existing = _unsent_refund_locked(payment, placeholder_id, amount)
            # Not our unsent refund after all: a refund made at the provider returns no excess.
            returns_excess = returns_excess and existing is not None
        left = payment.amount_collected - payment.amount_refunded
        if amount <= 0 or amount > left:
            raise DomainError(
                f"Cannot refund {amount}: only {left} of this payment is left.",
                code="refund_amount",
            )
        # A held payment, a duplicate and the excess of an overpayment never paid the invoice.
        credited = not (
            returns_excess or payment.is_duplicate or payment.status == PaymentStatus.HELD
        )
        refund = existing or Refund(
            payment=payment,
            amount=amount,
            idempotency_key=f"refund-{provider_refund_id}",
        )
        refund.provider_refund_id = provider_refund_id
        refund.status = RefundStatus.SUCCEEDED
        refund.succeeded_at = now
        refund.reason = refund.reason or reason
        refund.save()
        payment.amount_refunded += amount
        if payment.amount_refunded == payment.amount_collected:
            payment_set_status(
                payment, PaymentStatus.REFUNDED, actor=actor, customer=invoice.customer
            )
        else:
            payment.save(update_fields=["amount_refunded", "updated_at"])
        audit_record(
            actor=actor,
            action="refund.succeeded",
            target=refund,
            customer=invoice.customer,
            after={
                "amount": amount,
                "payment": payment.pk,
                "returns_excess": returns_excess,
                "provider_refund_id": provider_refund_id,
            },
            note=refund.reason,
        )
        if credited and invoice.status in PAYABLE_STATUSES:
            # Part of what the invoice owes was paid and is handed back: it is owed again.
            invoice.amount_paid -= min(amount, invoice.amount_paid - invoice.amount_refunded)
            invoice.state_version += 1
            invoice.save(update_fields=["amount_paid", "state_version", "updated_at"])
            _invoice_list_changed(invoice)
        elif credited:
            invoice.amount_refunded = min(invoice.amount_paid, invoice.amount_refunded + amount)
            if (
                invoice.status == InvoiceStatus.PAID
                and invoice.amount_refunded == invoice.amount_paid
            ):
                _set_invoice_status(
                    invoice, InvoiceStatus.REFUND, actor=actor, now=now, note=refund.reason
                )
            else:
                invoice.state_version += 1
                invoice.save(update_fields=["amount_refunded", "state_version", "updated_at"])
                _invoice_list_changed(invoice)
    return refund


def invoice_record_out_of_band_payment(*, invoice_id: int, actor: Actor, note: str = "") -> Invoice:
    """Staff record money received outside the portal (e.g. a bank transfer)."""
    with transaction.atomic():
        payment = payment_create(
            invoice_id=invoice_id, provider="manual", kind=PaymentKind.OUT_OF_BAND, actor=actor
        )
        payment_record_success(payment_id=payment.pk, actor=actor)
        invoice = Invoice.objects.get(pk=invoice_id)
        if note:
            audit_record(
                actor=actor,
                action="invoice.note",
                target=invoice,
                customer=invoice.customer,
                note=note,
            )
    return invoice
