"""Payments: the ledger of attempts, refunds and saved methods, and the provider around it.

The ledger services (payment_create, payment_record_success/failure/refund, ...) are the
only code that moves money on an invoice: each locks the invoice row before the payment
row, re-checks state, is idempotent and leaves an audit entry. The provider-facing services
below them (Pay online, automatic charges, saved methods, refunds, provider events) talk to
billing.payments.providers and turn what it answers, and what its events say, into calls of
the ledger services. Stripe webhooks and the sandbox's checkout page both end in
`provider_event_apply`, so they drive exactly the same code.
"""

import datetime
import enum
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from decimal import Decimal

from django.conf import settings
from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Subquery
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.invoices.models import PAYABLE_STATUSES, CreditNote, Invoice, InvoiceStatus
from billing.invoices.services import (
    emit_after_commit,
    lock_invoice,
    restore_standing_if_settled,
    set_invoice_status,
)
from contracts.models import ContractStatus, Customer, LeaseContract
from contracts.services import contract_extend_grace
from core.audit import Actor, audit_record
from core.errors import DomainError, InvalidTransition, check_transition
from core.money import ZERO, quantize, to_minor_units

from . import signals
from .mandates import mandate_text_for
from .models import (
    IDEMPOTENCY_KEY_TTL,
    PAYMENT_TRANSITIONS,
    UNKNOWN_PAYMENT_NOTE,
    ContractPaymentMethod,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentMethodType,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from .providers import (
    AuthenticationRequired,
    CardDeclined,
    PaymentError,
    PaymentProvider,
    ProviderBusy,
    ProviderUnavailable,
    get_provider,
    known_customer_ref,
    provider_for_invoice,
)
from .providers.base import ChargeOutcome, EventKind, MethodInfo, ProviderEvent
from .selectors import method_for_invoice

logger = logging.getLogger(__name__)


# --- The ledger -----------------------------------------------------------------------


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


def invoice_check_payable_online(invoice: Invoice, *, open_only: bool = False) -> None:
    """Raise DomainError (safe to show) unless the invoice may be paid online now.

    open_only: an Uncollectible invoice (written off by staff) is payable when the
    customer asks, but never charged unasked.
    """
    if invoice.contract_id and invoice.contract.status == ContractStatus.CANCELLED:
        raise DomainError(
            _("The contract of invoice %(number)s is cancelled; please contact us to pay it.")
            % {"number": invoice},
            code="invoice_not_payable",
        )
    if not invoice.is_payable or (open_only and invoice.status != InvoiceStatus.OPEN):
        raise DomainError(
            _("Invoice %(number)s is %(status)s and cannot be paid.")
            % {"number": invoice, "status": invoice.get_status_display().lower()},
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
                _("Invoice %(number)s is %(status)s and cannot be paid.")
                % {"number": invoice, "status": invoice.get_status_display().lower()},
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

# A caller's rule against charging, asked with the invoice locked: the reason not to
# charge (shown in logs and errors), or None to go ahead. Apps above payments
# (collections: "under review") pass their rules down this way instead of being imported.
ChargeHold = Callable[[Invoice], str | None]


def payment_start_saved_method_charge(
    *,
    invoice_id: int,
    provider: str,
    kind: str,
    actor: Actor,
    idempotency_key: str | None = None,
    hold: ChargeHold | None = None,
) -> Payment:
    """The attempt to send to the provider, decided under the invoice's row lock.

    A pending attempt (its worker died, or the provider could not be reached and a timeout
    does not say whether it charged) is handed back to be sent again under its own
    idempotency key, so the provider answers with the same charge instead of a second
    one. While another charge is processing or waits for the customer, a new one is
    refused. Otherwise a new attempt is created, unless `hold` (a caller's rule, asked
    under the lock) names a reason not to: then DomainError(code="held"). A pending
    attempt is still resumed under a hold: it was sent before the rule applied, and only
    its own idempotency key can tell whether it charged.
    """
    with transaction.atomic():
        invoice = lock_invoice_to_pay(invoice_id)
        # Re-checked under the lock: staff may have written the invoice off, or the
        # contract may have been cancelled, since the caller looked. Nothing is charged
        # unasked unless the invoice is Open.
        invoice_check_payable_online(invoice, open_only=kind == PaymentKind.AUTOMATIC)
        # A bank debit submitted by any route (Pay online too) blocks a second charge.
        under_way = (
            invoice.payments.filter(
                Q(kind__in=SAVED_METHOD_KINDS, status__in=_UNDER_WAY)
                | Q(status=PaymentStatus.PROCESSING)
            )
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
        held = hold(invoice) if hold is not None else None
        if held:
            raise DomainError(held, code="held")
        return payment_create(
            invoice_id=invoice.pk,
            provider=provider,
            kind=kind,
            actor=actor,
            idempotency_key=idempotency_key,
        )


def lock_payment(payment_id: int) -> tuple[Invoice, Payment]:
    """Lock the payment's invoice, then the payment (the one lock order)."""
    # The invoice found through the payment in the locking statement itself (a payment
    # never moves to another invoice): one round trip fewer on every money event.
    invoice_of_payment = Subquery(Payment.objects.filter(pk=payment_id).values("invoice_id")[:1])
    try:
        invoice = lock_invoice(invoice_of_payment)
    except DomainError:
        raise Payment.DoesNotExist(f"Payment {payment_id} does not exist.") from None
    return invoice, Payment.objects.select_for_update().get(pk=payment_id)


def _method_of(payment: Payment) -> dict[str, str]:
    """How it was paid, for the audit entry the customer's activity page reads."""
    if not payment.method_last4:
        return {}
    return {
        "method": f"{(payment.method_brand or 'card').capitalize()} •••• {payment.method_last4}"
    }


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
            _fill_provider_ids(
                payment, provider_payment_id=provider_payment_id, charge_id=provider_charge_id
            )
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
        payment.amount_credited = applied
        payment_set_status(payment, PaymentStatus.SUCCEEDED, actor=actor, customer=invoice.customer)
        if applied:
            if applied == invoice.amount_remaining:
                set_invoice_status(
                    invoice,
                    InvoiceStatus.PAID,
                    actor=actor,
                    now=now,
                    changes={
                        "amount_paid": invoice.amount_paid + applied,
                        "paid_out_of_band": payment.kind == PaymentKind.OUT_OF_BAND,
                    },
                    extra={"payment": payment.pk, **_method_of(payment)},
                )
                restore_standing_if_settled(invoice, actor=actor, today=now.date())
            else:
                invoice.amount_paid += applied
                invoice.state_version += 1
                invoice.save(update_fields=["amount_paid", "state_version", "updated_at"])
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
            emit_after_commit(signals.payment_needs_refund, payment_id=payment.pk, amount=excess)
    return payment


def payment_record_processing(
    *,
    payment_id: int,
    actor: Actor,
    event_created: datetime.datetime | None = None,
    provider_payment_id: str | None = None,
    brand: str = "",
    last4: str = "",
) -> Payment:
    """A bank debit was submitted: the money arrives, or not, days later (up to 14 business
    days for SEPA). The invoice stays Open and credits nothing yet, but while it holds no
    second charge starts and billing.collections neither reminds nor cancels for it.

    Quietly ignored when the payment is already processing or has an outcome (succeeded,
    refunded, held, cancelled). A failed payment goes back to processing only when the
    event was made after the failure was recorded: the provider may retry a failed
    intent, but a "processing" delivered late, after the failure it preceded, must not
    hide that failure (reconciliation, which reads the live state, passes no time).
    """
    with transaction.atomic():
        invoice, payment = lock_payment(payment_id)
        if payment.status not in (
            PaymentStatus.PENDING,
            PaymentStatus.REQUIRES_ACTION,
            PaymentStatus.FAILED,
        ):
            return payment
        if (
            payment.status == PaymentStatus.FAILED
            and event_created is not None
            and payment.failed_at is not None
            and event_created <= payment.failed_at
        ):
            return payment
        payment.provider_payment_id = provider_payment_id or payment.provider_payment_id
        payment.method_brand = brand or payment.method_brand
        payment.method_last4 = last4 or payment.method_last4
        payment_set_status(
            payment,
            PaymentStatus.PROCESSING,
            actor=actor,
            customer=invoice.customer,
            note="submitted to the bank; the outcome follows in days",
        )
    return payment


def _fresh_grace_after_late_failure(invoice: Invoice, payment: Payment, *, actor: Actor) -> None:
    """A debit failed after it had been processing: collection resumes with a full grace
    window from today, announced in the payment_failed e-mail (which names the contract's
    cancellation date). Never shortens a window; nothing when the invoice no longer owes.
    The caller holds the invoice lock; the contract is locked after it (the one order)."""
    if invoice.status != InvoiceStatus.OPEN or invoice.contract_id is None:
        return
    # Read again under the invoice lock: enforcement cancels while holding it.
    invoice.contract = LeaseContract.objects.get(pk=invoice.contract_id)
    if invoice.contract.status == ContractStatus.CANCELLED:
        return
    until = timezone.localdate() + datetime.timedelta(days=settings.GRACE_PERIOD_DAYS)
    current = invoice.cancellation_date
    if current is not None and current >= until:
        return
    try:
        contract_extend_grace(
            contract_id=invoice.contract_id,
            until=until,
            actor=actor,
            note=f"Fresh grace window: the bank debit (payment {payment.pk}) for "
            f"{invoice.number} failed after it had been processing.",
        )
    except DomainError as exc:
        # Cancelled by staff meanwhile: the failure is still recorded; nothing to extend.
        logger.warning("no fresh grace for %s: %s", invoice.number, exc.message)


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

    A bank debit that fails after it was processing (days later) also gives the contract a
    fresh grace window from today (_fresh_grace_after_late_failure).

    Quietly ignored when the payment already reached a final state: a late failure
    event never undoes a success.
    """
    target = PaymentStatus.REQUIRES_ACTION if requires_action else PaymentStatus.FAILED
    with transaction.atomic():
        invoice, payment = lock_payment(payment_id)
        if payment.status == target or target not in PAYMENT_TRANSITIONS[payment.status]:
            return payment
        was_processing = payment.status == PaymentStatus.PROCESSING
        payment.failure_code = code[:64]
        payment.failure_message = message[:300]
        payment.failed_at = now or timezone.now()
        payment_set_status(payment, target, actor=actor, customer=invoice.customer, note=message)
        if was_processing:
            _fresh_grace_after_late_failure(invoice, payment, actor=actor)
        emit_after_commit(signals.payment_failed, payment_id=payment.pk)
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
    now: datetime.datetime | None = None,
) -> Refund:
    """The processor says a refund failed or was cancelled. Recorded once per provider refund id.

    A pending refund becomes Failed and no longer holds back a new refund. A refund that had
    succeeded is undone, because the money came back to us: its amount goes back on the
    payment (Refunded -> Succeeded) and the part it had taken off the invoice on the invoice
    (Refund -> Paid). A failure for a refund we never saw is kept as a Failed row. Failed is final
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
            _refund_undo_locked(invoice, payment, refund, actor=actor, now=now)
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
        emit_after_commit(signals.refund_failed, refund_id=refund.pk)
    return refund


def _refund_undo_locked(
    invoice: Invoice,
    payment: Payment,
    refund: Refund,
    *,
    actor: Actor,
    now: datetime.datetime,
) -> None:
    """Put a succeeded refund's amount back on the payment, and its invoice share back on
    the invoice (caller locks). What it returned that the invoice never held (an excess, a
    duplicate, a held payment) stays with the payment for staff, who were told."""
    payment.amount_refunded = max(ZERO, payment.amount_refunded - refund.amount)
    # Only what is with us again: the refunds recorded since, while we held this one as
    # succeeded, may have taken part of the money it gives back (Stripe refunded less).
    share = min(refund.invoice_share, payment_excess_left(payment))
    if refund.credit_note_id:
        # The credit note stays as issued and the invoice never gave the money up: it is the
        # payment's again, and staff return it another way (or as customer credit).
        back = credit = ZERO
        payment.amount_credited += share
        logger.error(
            "STAFF: refund %s of %s for credit note %s failed at the processor; "
            "return the money another way or as customer credit",
            refund.pk,
            refund.amount,
            refund.credit_note_id,
        )
    else:
        # The invoice handed money back after it was paid: it holds it again. A share taken
        # while the invoice was still payable is owed again, and paid again up to what it
        # owes.
        back = min(share, invoice.amount_refunded)
        credit = (
            min(share - back, invoice.amount_remaining)
            if invoice.status in PAYABLE_STATUSES
            else ZERO
        )
        if share - back - credit:
            logger.error(
                "STAFF: %s of failed refund %s is back with us but invoice %s no longer owes it",
                share - back - credit,
                refund.pk,
                invoice,
            )
        payment.amount_credited += back + credit
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
        payment.save(update_fields=["amount_refunded", "amount_credited", "updated_at"])
    if not (back or credit):
        return
    changes = {
        "amount_refunded": invoice.amount_refunded - back,
        "amount_paid": invoice.amount_paid + credit,
    }
    if (
        invoice.status == InvoiceStatus.REFUND
        and changes["amount_refunded"] < changes["amount_paid"]
    ):
        # Paid again from the day it was first paid: the payment never went anywhere.
        set_invoice_status(
            invoice,
            InvoiceStatus.PAID,
            actor=actor,
            now=invoice.paid_at or now,
            note="a refund failed at the processor",
            changes=changes,
            extra={"refund": refund.pk},
        )
    elif invoice.status in PAYABLE_STATUSES and credit == invoice.amount_remaining:
        set_invoice_status(
            invoice,
            InvoiceStatus.PAID,
            actor=actor,
            now=now,
            note="a refund failed at the processor",
            changes=changes,
            extra={"refund": refund.pk},
        )
        restore_standing_if_settled(invoice, actor=actor, today=now.date())
    else:
        invoice.amount_refunded = changes["amount_refunded"]
        invoice.amount_paid = changes["amount_paid"]
        invoice.state_version += 1
        invoice.save(
            update_fields=["amount_paid", "amount_refunded", "state_version", "updated_at"]
        )


# In the idempotency key of our refunds that return an excess (see EXCESS below).
_EXCESS_MARK = "-excess-"


def payment_excess_left(payment: Payment, *, besides: Refund | None = None) -> Decimal:
    """What of the payment is with us but not its invoice's (an excess, a duplicate), and not
    already on its way back through a pending excess refund other than `besides`."""
    on_its_way = sum(
        (
            r.amount
            for r in payment.refunds.filter(status=RefundStatus.PENDING)
            if _EXCESS_MARK in r.idempotency_key and (besides is None or r.pk != besides.pk)
        ),
        ZERO,
    )
    left = payment.amount_collected - payment.amount_refunded
    return max(ZERO, left - payment.amount_credited - on_its_way)


def _refund_invoice_share(payment: Payment, amount: Decimal, *, recorded: Refund | None) -> Decimal:
    """How much of a refund of `amount` comes off the payment's invoice (caller locks).

    A refund first returns what of the payment the invoice never held (payment_excess_left),
    then the invoice's part: a refund made at the provider before our excess refund went
    out takes the excess with it, and the invoice keeps what it was paid. `recorded`: the
    row this refund fills in, if it is one of ours.
    """
    not_invoices = payment_excess_left(payment, besides=recorded)
    return min(payment.amount_credited, max(ZERO, amount - not_invoices))


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
    still payable (a short payment) is owed again. Only the invoice's share of the payment
    comes off the invoice (_refund_invoice_share): returning a duplicate's money, an excess
    or a held payment does not touch the invoice it never paid. A refund already recorded as
    Failed stays so. `placeholder_id`: our pending refund whose provider answer has not come
    back yet; its row (and the staff's reason) is filled in.
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
        share = _refund_invoice_share(payment, amount, recorded=existing)
        refund = existing or Refund(
            payment=payment,
            amount=amount,
            idempotency_key=f"refund-{provider_refund_id}",
        )
        refund.provider_refund_id = provider_refund_id
        refund.status = RefundStatus.SUCCEEDED
        refund.succeeded_at = now
        refund.reason = refund.reason or reason
        refund.invoice_share = share
        refund.save()
        payment.amount_refunded += amount
        payment.amount_credited -= share
        if payment.amount_refunded == payment.amount_collected:
            payment_set_status(
                payment, PaymentStatus.REFUNDED, actor=actor, customer=invoice.customer
            )
        else:
            payment.save(update_fields=["amount_refunded", "amount_credited", "updated_at"])
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
                "invoice_share": share,
            },
            note=refund.reason,
        )
        # A credit note's refund leaves the invoice as it is: the credit note already took
        # the money off what it holds (post_payment_credit_notes_amount); Stripe keeps such
        # an invoice paid.
        share = ZERO if refund.credit_note_id else share
        if share and invoice.status in PAYABLE_STATUSES:
            # Part of what the invoice owes was paid and is handed back: it is owed again.
            invoice.amount_paid -= share
            invoice.state_version += 1
            invoice.save(update_fields=["amount_paid", "state_version", "updated_at"])
        elif share:
            refunded = invoice.amount_refunded + share
            if invoice.status == InvoiceStatus.PAID and refunded == invoice.amount_paid:
                set_invoice_status(
                    invoice,
                    InvoiceStatus.REFUND,
                    actor=actor,
                    now=now,
                    note=refund.reason,
                    changes={"amount_refunded": refunded},
                )
            else:
                invoice.amount_refunded = refunded
                invoice.state_version += 1
                invoice.save(update_fields=["amount_refunded", "state_version", "updated_at"])
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


AUTO_REFUND = "automatic refund"
_OPEN_STATES = (PaymentStatus.PENDING, PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION)


# --- Checks and helpers ---------------------------------------------------------------


def _invoice(invoice_id: int) -> Invoice:
    try:
        return Invoice.objects.select_related("customer", "contract").get(pk=invoice_id)
    except Invoice.DoesNotExist:
        raise DomainError("That invoice does not exist.", code="not_found") from None


def customer_provider_ref(*, provider: PaymentProvider, customer: Customer, actor: Actor) -> str:
    """The customer's id at the provider, created when first needed and stored once."""
    if provider.name != "stripe":
        return provider.customer_ref(customer=customer)
    if customer.stripe_customer_id:
        return customer.stripe_customer_id
    # The create call carries an idempotency key per customer: a race makes one Customer.
    ref = provider.customer_ref(customer=customer)
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        if not locked.stripe_customer_id:
            locked.stripe_customer_id = ref
            locked.save(update_fields=["stripe_customer_id"])
            audit_record(
                actor=actor,
                action="customer.provider_created",
                target=locked,
                customer=locked,
                after={"stripe_customer_id": ref},
            )
        customer.stripe_customer_id = locked.stripe_customer_id
    return customer.stripe_customer_id


def _remember_provider_ids(
    payment_id: int, *, provider_payment_id: str = "", charge_id: str = ""
) -> None:
    """Fill in provider ids we did not know yet; never overwrites one."""
    with transaction.atomic():
        _invoice_locked, payment = lock_payment(payment_id)
        _fill_provider_ids(payment, provider_payment_id=provider_payment_id, charge_id=charge_id)


def _fill_provider_ids(
    payment: Payment, *, provider_payment_id: str | None = "", charge_id: str = ""
) -> None:
    """The blanks of a locked payment's provider ids, written; a known id is never changed."""
    changed = []
    if provider_payment_id and not payment.provider_payment_id:
        payment.provider_payment_id = provider_payment_id
        changed.append("provider_payment_id")
    if charge_id and not payment.provider_charge_id:
        payment.provider_charge_id = charge_id
        changed.append("provider_charge_id")
    if changed:
        payment.save(update_fields=[*changed, "updated_at"])


def payment_cancel(*, payment_id: int, actor: Actor, reason: str = "") -> Payment:
    """An attempt that can no longer take money (expired session). Quiet when already final."""
    with transaction.atomic():
        invoice, payment = lock_payment(payment_id)
        if payment.status not in _OPEN_STATES:
            return payment
        payment_set_status(
            payment, PaymentStatus.CANCELLED, actor=actor, customer=invoice.customer, note=reason
        )
    return payment


# --- Pay online ---------------------------------------------------------------------


def _reusable_checkout(
    invoice: Invoice, provider: PaymentProvider, *, success_url: str, cancel_url: str
) -> Payment | None:
    # Only a session that sends its payer back where this one wants to go: the PDF link's
    # anonymous payer must not land on a member's (login-only) return page, nor the reverse.
    since = timezone.now() - datetime.timedelta(minutes=settings.CHECKOUT_REUSE_MINUTES)
    return (
        Payment.objects.filter(
            invoice=invoice,
            kind=PaymentKind.CHECKOUT,
            provider=provider.name,
            status__in=[PaymentStatus.PENDING, PaymentStatus.FAILED],
            amount=invoice.amount_remaining,
            created_at__gte=since,
            provider_checkout_id__isnull=False,
            checkout_success_url=success_url,
            checkout_cancel_url=cancel_url,
        )
        .exclude(checkout_url="")
        .exclude(failure_code="async_payment_failed")
        .order_by("-created_at")
        .first()
    )


# A Pay online attempt recorded without its session yet is being created by the request
# that recorded it (its provider call is under way, within the web budget). Older than this,
# that request is gone (its worker died) and the attempt is given up.
CHECKOUT_IN_FLIGHT = datetime.timedelta(seconds=60)
# How often a second click looks whether the first one's session has arrived.
_CHECKOUT_POLL_SECONDS = 0.2


def checkout_start(
    *,
    invoice_id: int,
    actor: Actor,
    success_url: str,
    cancel_url: str,
    language: str | None = None,
) -> str:
    """Start paying the invoice's amount_remaining online; returns the URL to send the payer to.

    `language` is the language of the page the payer clicked Pay online on; the provider's
    payment page continues in it (None: the provider's own choice, the browser's).

    No row lock is held while the provider is called (a slow provider must not block
    webhooks, charges and grace enforcement on the invoice). Three steps:
    1. under the invoice lock: re-check, reuse a still-open session for the same invoice,
       amount and return URLs, or record a pending attempt (which reserves the session:
       two clicks make one) and commit;
    2. with no lock: create the session at the provider under the attempt's idempotency key;
    3. under the locks again: store the session, unless the invoice stopped being payable
       meanwhile (voided, paid, contract cancelled); then the session is expired again.
    A click that finds the attempt of another click still under way waits up to
    settings.CHECKOUT_WAIT_SECONDS for its session, then answers ProviderBusy (try again).
    When the provider fails, the attempt is recorded as failed and the error (safe to show)
    raised; ProviderBusy (the same request still in progress there) leaves it pending.
    """
    # The invoice's currency picks the provider (providers.provider_for_invoice); it never
    # changes once the invoice exists, so it is read before the lock.
    provider = get_provider(provider_for_invoice(_invoice(invoice_id)))
    with transaction.atomic():
        invoice = lock_invoice_to_pay(invoice_id)
        invoice_check_payable_online(invoice)
        if invoice.payments.filter(status=PaymentStatus.PROCESSING).exists():
            raise DomainError(
                f"A payment for invoice {invoice} is processing at the bank; "
                "please wait for its outcome before paying again.",
                code="payment_processing",
            )
        reusable = _reusable_checkout(
            invoice, provider, success_url=success_url, cancel_url=cancel_url
        )
        if reusable:
            return reusable.checkout_url
        under_way = _checkout_under_way(
            invoice, provider, success_url=success_url, cancel_url=cancel_url, actor=actor
        )
        if under_way is None:
            payment = payment_create(
                invoice_id=invoice.pk,
                provider=provider.name,
                kind=PaymentKind.CHECKOUT,
                actor=actor,
            )
            payment.checkout_success_url = success_url
            payment.checkout_cancel_url = cancel_url
            payment.save(update_fields=["checkout_success_url", "checkout_cancel_url"])
    if under_way is not None:
        return _checkout_wait_for(under_way.pk)
    try:
        customer_ref = customer_provider_ref(
            provider=provider, customer=invoice.customer, actor=actor
        )
        session = provider.checkout_create(
            payment=payment,
            invoice=invoice,
            customer_ref=customer_ref,
            success_url=success_url,
            cancel_url=cancel_url,
            language=language,
        )
    except ProviderBusy:
        raise  # the provider still works on this very attempt: it stays pending
    except PaymentError as exc:
        payment_record_failure(
            payment_id=payment.pk, actor=actor, code=exc.code, message=exc.message
        )
        raise
    return _checkout_record_session(payment.pk, session=session, actor=actor)


def _checkout_under_way(
    invoice: Invoice, provider: PaymentProvider, *, success_url: str, cancel_url: str, actor: Actor
) -> Payment | None:
    """The attempt another click recorded and is creating the session of (caller holds the
    invoice lock); one whose request ended without a session is given up here."""
    pending = Payment.objects.select_for_update().filter(
        invoice=invoice,
        kind=PaymentKind.CHECKOUT,
        provider=provider.name,
        status=PaymentStatus.PENDING,
        provider_checkout_id__isnull=True,
    )
    found = None
    for payment in pending.order_by("-created_at"):
        alive = payment.created_at >= timezone.now() - CHECKOUT_IN_FLIGHT
        if (
            found is None
            and alive
            and payment.amount == invoice.amount_remaining
            and (
                (payment.checkout_success_url, payment.checkout_cancel_url)
                == (success_url, cancel_url)
            )
        ):
            found = payment
        elif not alive:
            # Its session, if the provider made one, was never shown to anybody.
            payment_set_status(
                payment,
                PaymentStatus.CANCELLED,
                actor=actor,
                customer=invoice.customer,
                note="its request ended before the payment page was created",
            )
    return found


def _checkout_wait_for(payment_id: int) -> str:
    """The session URL another click's attempt gets, polled with no lock held."""
    # perf_counter: monotonic too, and real time even where tests freeze the clock.
    deadline = time.perf_counter() + settings.CHECKOUT_WAIT_SECONDS
    while True:
        row = Payment.objects.filter(pk=payment_id).values(
            "status", "checkout_url", "failure_code", "failure_message"
        )[0]
        if row["checkout_url"]:
            return row["checkout_url"]
        if row["status"] != PaymentStatus.PENDING:
            if row["failure_code"] == ProviderUnavailable.code:
                raise ProviderUnavailable(row["failure_message"])
            raise PaymentError(row["failure_message"])
        if time.perf_counter() >= deadline:
            raise ProviderBusy(
                "Your payment page is still being prepared. Nothing was charged; "
                "please try again in a moment."
            )
        time.sleep(_CHECKOUT_POLL_SECONDS)


def _checkout_record_session(payment_id: int, *, session, actor: Actor) -> str:
    """Store the session made for the attempt (step 3 of checkout_start); returns its URL.

    Re-checked under the locks: if the invoice can no longer be paid online, or the attempt
    was given up, the session is stored (so expiring it can be retried by the periodic
    sweep), expired at the provider with no lock held, and DomainError raised.
    """
    with transaction.atomic():
        invoice, payment = lock_payment(payment_id)
        if invoice.contract_id:
            invoice.contract = LeaseContract.objects.get(pk=invoice.contract_id)
        payment.provider_checkout_id = session.id
        payment.checkout_url = session.url
        payment.save(update_fields=["provider_checkout_id", "checkout_url", "updated_at"])
        audit_record(
            actor=actor,
            action="payment.checkout_started",
            target=payment,
            customer=invoice.customer,
            after={"session": session.id, "amount": payment.amount},
        )
        refusal: DomainError | None = None
        try:
            invoice_check_payable_online(invoice)
        except DomainError as exc:
            refusal = exc
        if refusal is None and payment.status not in (PaymentStatus.PENDING, PaymentStatus.FAILED):
            refusal = DomainError(
                "This payment was stopped while its page was being prepared; please try again.",
                code="payment_stopped",
            )
        if refusal is None and payment.amount != invoice.amount_remaining:
            refusal = DomainError(
                f"The amount due on invoice {invoice} changed; please try again.",
                code="amount_changed",
            )
    if refusal is None:
        return session.url
    try:
        get_provider(payment.provider).checkout_expire(checkout_id=session.id)
    except PaymentError as exc:
        logger.warning("checkout %s left for the sweep to expire: %s", session.id, exc.message)
    else:
        payment_cancel(payment_id=payment_id, actor=actor, reason="checkout expired")
    raise refusal


def checkout_expire_for_invoice(*, invoice_id: int, actor: Actor) -> int:
    """Close every open Pay online session of the invoice (e.g. its contract was cancelled)."""
    open_sessions = Payment.objects.filter(
        invoice_id=invoice_id,
        kind=PaymentKind.CHECKOUT,
        status__in=[*_OPEN_STATES, PaymentStatus.FAILED],
        provider_checkout_id__isnull=False,
    )
    count = 0
    for payment in open_sessions:
        get_provider(payment.provider).checkout_expire(checkout_id=payment.provider_checkout_id)
        payment_cancel(payment_id=payment.pk, actor=actor, reason="checkout expired")
        count += 1
    return count


# A Pay online session lives an hour at the provider (providers.stripe_provider); the sweep
# looks a little further back for the ones it must close.
_SWEEP_SESSIONS_SINCE = datetime.timedelta(hours=2)


def checkout_sessions_to_expire(*, now: datetime.datetime) -> list[int]:
    """Invoices with a Pay online session still open although the invoice can no longer be
    paid online: voided, paid, or its contract cancelled."""
    return list(
        Payment.objects.filter(
            Q(status__in=_OPEN_STATES)
            | Q(status=PaymentStatus.FAILED, created_at__gte=now - _SWEEP_SESSIONS_SINCE),
            kind=PaymentKind.CHECKOUT,
            provider_checkout_id__isnull=False,
        )
        .filter(
            Q(invoice__status__in=[InvoiceStatus.VOID, InvoiceStatus.PAID])
            | Q(invoice__contract__status=ContractStatus.CANCELLED)
        )
        .order_by("invoice_id")
        .values_list("invoice_id", flat=True)
        .distinct()
    )


def checkout_sessions_expire_unpayable(
    *, actor: Actor, now: datetime.datetime | None = None
) -> int:
    """The periodic sweep behind the queued expire_checkout_sessions: closes every session of
    checkout_sessions_to_expire; returns how many. Safe to run any number of times (an
    expired session is cancelled here and not found again). A provider that cannot be
    reached is logged; the next run tries again."""
    closed = 0
    for invoice_id in checkout_sessions_to_expire(now=now or timezone.now()):
        try:
            closed += checkout_expire_for_invoice(invoice_id=invoice_id, actor=actor)
        except ProviderUnavailable as exc:
            logger.warning("sessions of invoice %s not expired: %s", invoice_id, exc.message)
    return closed


# --- Charging a saved payment method -----------------------------------------------------


def _apply_outcome(
    payment: Payment, outcome: ChargeOutcome, *, actor: Actor, synchronous: bool = False
) -> None:
    """Apply what the provider answered about a payment.

    synchronous: the answer to our own charge call for payment.amount. Only then may a
    success that does not say how much it took count as what we asked for; a success read
    back later (reconciliation) without an amount is held for staff.
    """
    event_kind = {
        "succeeded": EventKind.PAYMENT_SUCCEEDED,
        "failed": EventKind.PAYMENT_FAILED,
        "requires_action": EventKind.PAYMENT_REQUIRES_ACTION,
        "cancelled": EventKind.CHECKOUT_EXPIRED,
        "processing": EventKind.PAYMENT_PROCESSING,
    }.get(outcome.status)
    if event_kind is None:
        _remember_provider_ids(
            payment.pk, provider_payment_id=outcome.provider_payment_id, charge_id=outcome.charge_id
        )
        return
    amount, currency = outcome.amount_received, outcome.currency
    if amount is None and synchronous:
        amount, currency = payment.amount, payment.currency
    provider_event_apply(
        ProviderEvent(
            kind=event_kind,
            payment_id=payment.pk,
            provider_payment_id=outcome.provider_payment_id,
            charge_id=outcome.charge_id,
            brand=outcome.brand,
            last4=outcome.last4,
            amount_received=amount,
            currency=currency,
            provider_customer_id=outcome.provider_customer_id,
            failure_code=outcome.failure_code
            or (
                "authentication_required" if event_kind == EventKind.PAYMENT_REQUIRES_ACTION else ""
            ),
            failure_message=outcome.failure_message
            or (
                AuthenticationRequired.default_message
                if event_kind == EventKind.PAYMENT_REQUIRES_ACTION
                else CardDeclined.default_message
            ),
        ),
        actor=actor,
    )


def _charge(
    *,
    invoice: Invoice,
    method_id: str,
    off_session: bool,
    kind: str,
    actor: Actor,
    idempotency_key: str | None = None,
    hold: ChargeHold | None = None,
) -> Payment:
    """Start (or resume) the attempt, charge the method, record what happened.

    The attempt comes from payment_start_saved_method_charge, which decides under
    the invoice's lock. When the provider is unreachable the attempt stays pending, so the
    next try is sent under the same idempotency key. Raises PaymentError, or DomainError
    when the invoice is not payable or another charge is under way.
    """
    provider = get_provider()
    customer_ref = customer_provider_ref(provider=provider, customer=invoice.customer, actor=actor)
    payment = payment_start_saved_method_charge(
        invoice_id=invoice.pk,
        provider=provider.name,
        kind=kind,
        actor=actor,
        idempotency_key=idempotency_key,
        hold=hold,
    )
    try:
        outcome = provider.charge_saved_method(
            payment=payment,
            invoice=invoice,
            customer_ref=customer_ref,
            method_id=method_id,
            off_session=off_session,
        )
    except ProviderUnavailable:
        raise
    except PaymentError as exc:
        _remember_provider_ids(
            payment.pk, provider_payment_id=getattr(exc, "provider_payment_id", "")
        )
        payment_record_failure(
            payment_id=payment.pk,
            actor=actor,
            code=exc.code,
            message=exc.message,
            requires_action=isinstance(exc, AuthenticationRequired),
        )
        raise
    _apply_outcome(payment, outcome, actor=actor, synchronous=True)
    payment.refresh_from_db()
    return payment


def invoice_charge_automatically(
    *, invoice_id: int, actor: Actor, hold: ChargeHold | None = None
) -> Payment | None:
    """Charge the invoice's method off-session for amount_remaining: the one its contract
    names, else the customer's default (selectors.method_for_invoice). A bank method makes
    a processing payment that settles days later.

    Returns None when there is nothing to do (not payable, no default method, another
    charge under way, or `hold` — the caller's rule, asked under the invoice's lock
    before a new attempt is created — gives a reason not to charge: billing.collections
    passes "the invoice is under review", which payments cannot import). A decline or a
    3-D Secure request returns the failed (or requires_action) Payment and leaves the
    invoice Open with the reason; the payment_failed signal tells the customer.
    ProviderUnavailable is raised with the attempt left pending, so the caller (a Celery
    task) retries and resumes that same attempt under its idempotency key.
    """
    invoice = _invoice(invoice_id)
    try:
        # Checked again under the lock when the attempt starts (services).
        invoice_check_payable_online(invoice, open_only=True)
    except DomainError:
        return None
    method = method_for_invoice(invoice)
    if method is None:
        return None
    try:
        return _charge(
            invoice=invoice,
            method_id=method.provider_id,
            off_session=True,
            kind=PaymentKind.AUTOMATIC,
            actor=actor,
            hold=hold,
        )
    except (CardDeclined, AuthenticationRequired):
        return invoice.payments.filter(kind=PaymentKind.AUTOMATIC).order_by("-attempt").first()
    except DomainError:
        return None  # paid in the meantime, or another charge is under way


def invoice_pay_with_saved_method(
    *,
    invoice_id: int,
    payment_method_id: str,
    off_session: bool,
    actor: Actor,
    idempotency_key: str | None = None,
) -> Invoice:
    """Charge one of the customer's saved methods now (the API's pay endpoint).

    Raises DomainError (not payable, unknown method), CardDeclined,
    AuthenticationRequired or ProviderUnavailable, each with a message safe to show.
    Repeating a request with the same idempotency_key within IDEMPOTENCY_KEY_TTL of its
    attempt gives the same answer (the invoice, or the same decline) without charging
    again; a pending attempt is resumed. After that the key names a new request, as at
    Stripe, and the card is charged again under a new attempt.
    """
    invoice = _invoice(invoice_id)
    base = key = None
    if idempotency_key:
        # Hashed: the client's key may be long, and it only has to name this request.
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
        base = f"invoice-{invoice.pk}-api-{digest}"
        key, previous = _api_attempt_key(invoice, base)
        if previous is not None:
            return _api_answer(previous)
    invoice_check_payable_online(invoice)
    method = PaymentMethod.objects.filter(
        customer_id=invoice.customer_id,
        provider=settings.PAYMENT_PROVIDER,
        provider_id=payment_method_id,
    ).first()
    if method is None:
        raise DomainError("That payment method is not saved for this customer.", code="method")
    try:
        payment = _charge(
            invoice=invoice,
            method_id=method.provider_id,
            off_session=off_session,
            kind=PaymentKind.API,
            actor=actor,
            idempotency_key=key,
        )
    except IntegrityError:
        # The same key raced in: the first request owns it, and this one answers as it did.
        previous = _api_attempt_key(invoice, base)[1] if base else None
        if previous is None:
            raise DomainError(
                f"A payment for invoice {invoice} is already under way; "
                "it is confirmed or released within minutes.",
                code="payment_in_progress",
            ) from None
        return _api_answer(previous)
    return _api_answer(payment)


def _api_attempt_key(invoice: Invoice, base: str) -> tuple[str, Payment | None]:
    """The attempt key for an API request keyed `base`, or the attempt that already answered it.

    A pending attempt is resumed under its own key. A finished one answers again while the
    key is alive (IDEMPOTENCY_KEY_TTL from the attempt); after that the request is new and
    gets the next key (`base-r2`, `-r3`, ...), which the provider sees as a new charge.
    """
    family = Payment.objects.filter(invoice=invoice, kind=PaymentKind.API).filter(
        Q(idempotency_key=base) | Q(idempotency_key__startswith=f"{base}-r")
    )
    latest = family.order_by("-created_at", "-pk").first()
    if latest is None:
        return base, None
    if latest.status == PaymentStatus.PENDING:
        return latest.idempotency_key, None
    if latest.created_at >= timezone.now() - IDEMPOTENCY_KEY_TTL:
        return latest.idempotency_key, latest
    return f"{base}-r{family.count() + 1}", None


def _api_answer(payment: Payment) -> Invoice:
    """What an API charge answers once its attempt has run: the same for every repeat."""
    if payment.status == PaymentStatus.REQUIRES_ACTION:
        raise AuthenticationRequired()
    if payment.status == PaymentStatus.FAILED:
        raise CardDeclined(payment.failure_message, code=payment.failure_code or None)
    return _invoice(payment.invoice_id)


# --- 3-D Secure: confirming, or releasing, an attempt that waits for the customer -------


def payment_release(*, payment_id: int, actor: Actor, reason: str) -> Payment:
    """Give up on a charge that waits for 3-D Secure, so the invoice can be charged again.

    Cancelled at the provider first (it can take no money after that), then here through
    payment_cancel (lock, re-check, audit). When the provider answers that it went through
    meanwhile, that success is applied instead. Quiet when the attempt no longer waits.
    Raises ProviderUnavailable with the attempt left as it was.
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != PaymentStatus.REQUIRES_ACTION:
        return payment
    outcome = get_provider(payment.provider).payment_cancel(payment=payment)
    if outcome.status == "cancelled":
        return payment_cancel(payment_id=payment.pk, actor=actor, reason=reason)
    _apply_outcome(payment, outcome, actor=actor)
    payment.refresh_from_db()
    return payment


def payments_release_stale_actions(*, actor: Actor, now: datetime.datetime | None = None) -> int:
    """Release saved-method charges that waited for 3-D Secure longer than
    REQUIRES_ACTION_TIMEOUT_HOURS; returns how many were released (or found paid).

    Such an attempt refuses every other automatic or API charge of its invoice while it
    waits (payment_start_saved_method_charge), so an abandoned prompt would block
    the invoice until grace cancels the contract. Pay online sessions are left to expire
    at their provider. A provider that cannot be reached is logged; the next run tries again.
    """
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(hours=settings.REQUIRES_ACTION_TIMEOUT_HOURS)
    stale = Payment.objects.filter(
        Q(failed_at__lte=cutoff) | Q(failed_at__isnull=True, created_at__lte=cutoff),
        kind__in=SAVED_METHOD_KINDS,
        status=PaymentStatus.REQUIRES_ACTION,
    ).values_list("pk", flat=True)
    released = 0
    for payment_id in list(stale):
        try:
            payment = payment_release(
                payment_id=payment_id, actor=actor, reason="3-D Secure not confirmed in time"
            )
        except PaymentError as exc:
            logger.warning("payment %s not released: %s", payment_id, exc.message)
            continue
        released += payment.status != PaymentStatus.REQUIRES_ACTION
    return released


def payment_confirm_start(
    *,
    payment_id: int,
    actor: Actor,
    return_url: str,
    success_url: str,
    cancel_url: str,
    language: str | None = None,
) -> str | None:
    """Where to send the customer to confirm a charge that waits for 3-D Secure.

    The provider's own page for that very attempt when it has one (the sandbox's; Stripe's
    next_action.redirect_to_url for a charge confirmed on-session), which sends them back
    to `return_url`. Otherwise (Stripe leaves an off-session charge that needs
    authentication without such a page) the attempt is released and the customer goes to
    a new Pay online session for what the invoice still owes. None when there is nothing
    left to confirm: the attempt went through meanwhile. Raises DomainError (safe to show)
    when it no longer waits or the invoice cannot be paid, PaymentError from the provider.
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != PaymentStatus.REQUIRES_ACTION:
        raise DomainError(
            "This payment no longer waits for your confirmation.", code="not_requires_action"
        )
    outcome = get_provider(payment.provider).payment_confirmation(
        payment=payment, return_url=return_url
    )
    if outcome.status == "requires_action" and outcome.action_url:
        return outcome.action_url
    if outcome.status in ("succeeded", "processing"):
        _apply_outcome(payment, outcome, actor=actor)
        return None
    payment = payment_release(
        payment_id=payment.pk, actor=actor, reason="replaced by Pay online to confirm it"
    )
    if payment.status in (PaymentStatus.SUCCEEDED, PaymentStatus.PROCESSING):
        return None
    return checkout_start(
        invoice_id=payment.invoice_id,
        actor=actor,
        success_url=success_url,
        cancel_url=cancel_url,
        language=language,
    )


def payment_refresh(*, payment_id: int, actor: Actor) -> Payment:
    """Read one payment's state at its provider now and apply it (the customer is back from
    confirming it; the provider's event may come later, and then changes nothing)."""
    payment = Payment.objects.get(pk=payment_id)
    outcome = get_provider(payment.provider).payment_retrieve(payment=payment)
    if outcome is not None and outcome.status in ("succeeded", "failed", "cancelled"):
        _apply_outcome(payment, outcome, actor=actor)
        payment.refresh_from_db()
    return payment


# --- Saved payment methods -------------------------------------------------------------


def payment_method_setup_start(
    *, customer_id: int, actor: Actor, success_url: str, cancel_url: str
) -> str:
    """Start saving a new card (Checkout in setup mode); returns the URL to go to."""
    provider = get_provider()
    customer = Customer.objects.get(pk=customer_id)
    ref = customer_provider_ref(provider=provider, customer=customer, actor=actor)
    session = provider.setup_checkout_create(
        customer=customer, customer_ref=ref, success_url=success_url, cancel_url=cancel_url
    )
    return session.url


def _method_upsert(*, customer: Customer, provider: str, info: MethodInfo, actor: Actor) -> None:
    """Save (or refresh) a method the provider reports for the customer; the first one saved
    becomes the default. A bank account keeps the mandate it was saved with: later events
    that do not carry one (payment_method.attached) leave it as it is."""
    fields = {
        "customer": customer,
        "type": info.type or PaymentMethodType.CARD,
        "brand": info.brand,
        "bank_name": info.bank_name,
        "last4": info.last4,
        "exp_month": info.exp_month,
        "exp_year": info.exp_year,
    }
    mandate = {
        "mandate_reference": info.mandate_reference,
        "mandate_id": info.mandate_id,
        "mandate_accepted_at": info.mandate_accepted_at,
        "mandate_text": info.mandate_text,
    }
    fields.update({name: value for name, value in mandate.items() if value})
    with transaction.atomic():
        Customer.objects.select_for_update().get(pk=customer.pk)
        method, created = PaymentMethod.objects.update_or_create(
            provider=provider, provider_id=info.id, defaults=fields
        )
        if method.is_bank and not method.mandate_text:
            # The provider's mandate carries no wording: keep the one the customer was shown.
            method.mandate_text = mandate_text_for(method.type)
            if method.mandate_accepted_at is None:
                method.mandate_accepted_at = timezone.now()
            method.save(update_fields=["mandate_text", "mandate_accepted_at"])
        if not PaymentMethod.objects.filter(customer=customer, is_default=True).exists():
            method.is_default = True
            method.save(update_fields=["is_default"])
        if created:
            audit_record(
                actor=actor,
                action="payment_method.added",
                target=method,
                customer=customer,
                after={
                    "type": method.type,
                    "method": method.label,
                    "mandate": method.mandate_reference,
                    "default": method.is_default,
                },
            )


def payment_method_set_default(*, customer_id: int, method_id: int, actor: Actor) -> PaymentMethod:
    """Make one saved method the one automatic charges use."""
    method = PaymentMethod.objects.select_related("customer").get(
        pk=method_id, customer_id=customer_id
    )
    provider = get_provider(method.provider)
    provider.method_set_default(
        customer_ref=customer_provider_ref(
            provider=provider, customer=method.customer, actor=actor
        ),
        method_id=method.provider_id,
    )
    with transaction.atomic():
        Customer.objects.select_for_update().get(pk=customer_id)
        PaymentMethod.objects.filter(customer_id=customer_id, is_default=True).update(
            is_default=False
        )
        PaymentMethod.objects.filter(pk=method.pk).update(is_default=True)
        audit_record(
            actor=actor, action="payment_method.default", target=method, customer=method.customer
        )
    method.is_default = True
    return method


def payment_method_remove(
    *, customer_id: int, method_id: int, actor: Actor, replacement_id: int | None = None
) -> None:
    """Detach a saved method at the provider and forget it. Quiet when already gone.

    Contracts that name this method are moved to `replacement_id` (another method of the
    customer) first, or back to the customer's default when it is None; a replacement that
    is the removed method itself, or not the customer's, is refused (DomainError).
    """
    method = PaymentMethod.objects.filter(pk=method_id, customer_id=customer_id).first()
    if method is None:
        return
    if replacement_id is not None and (
        replacement_id == method.pk
        or not PaymentMethod.objects.filter(pk=replacement_id, customer_id=customer_id).exists()
    ):
        raise DomainError("Choose one of your other payment methods.", code="replacement")
    get_provider(method.provider).method_detach(method_id=method.provider_id)
    _method_forget(
        provider_id=method.provider_id,
        provider=method.provider,
        actor=actor,
        replacement_id=replacement_id,
    )


def _method_forget(
    *, provider_id: str, provider: str, actor: Actor, replacement_id: int | None = None
) -> None:
    """Forget a method; contracts that used it move to `replacement_id`, else to the default
    (a method detached at the provider, e.g. from its dashboard, leaves no one to ask)."""
    with transaction.atomic():
        method = (
            PaymentMethod.objects.select_related("customer")
            .filter(provider=provider, provider_id=provider_id)
            .first()
        )
        if method is None:
            return
        Customer.objects.select_for_update().get(pk=method.customer_id)
        replacement = (
            PaymentMethod.objects.filter(pk=replacement_id, customer_id=method.customer_id)
            .exclude(pk=method.pk)
            .first()
            if replacement_id is not None
            else None
        )
        for link in ContractPaymentMethod.objects.select_for_update().filter(method=method):
            _contract_method_write(
                link.contract_id, replacement, customer=method.customer, actor=actor
            )
        audit_record(
            actor=actor,
            action="payment_method.removed",
            target=method,
            customer=method.customer,
            before={"type": method.type, "method": method.label},
        )
        method.delete()


# --- The payment method of a contract --------------------------------------------------


def _contract_method_write(
    contract_id: int, method: PaymentMethod | None, *, customer: Customer, actor: Actor
) -> None:
    """Point the contract at `method` (None: the customer's default). Caller holds the
    customer's lock (the one every saved-method change takes)."""
    link = ContractPaymentMethod.objects.select_for_update().filter(contract_id=contract_id).first()
    if (link.method_id if link is not None else None) == (method.pk if method else None):
        return
    before = link.method.label if link is not None else "default"
    after = method.label if method is not None else "default"
    if method is None:
        link.delete()
    elif link is None:
        ContractPaymentMethod.objects.create(contract_id=contract_id, method=method)
    else:
        link.method = method
        link.save(update_fields=["method", "updated_at"])
    audit_record(
        actor=actor,
        action="contract.payment_method",
        target=LeaseContract.objects.get(pk=contract_id),
        customer=customer,
        before={"method": before},
        after={"method": after},
    )


def contract_payment_method_set(
    *, customer_id: int, contract_id: int, method_id: int | None, actor: Actor
) -> PaymentMethod | None:
    """Charge the contract with one of the customer's saved methods, or (method_id None)
    with the customer's default again. Locked, re-checked, audited; quiet when unchanged.

    Raises LeaseContract.DoesNotExist / PaymentMethod.DoesNotExist for another customer's
    contract or method (the caller answers 404), DomainError for a cancelled contract.
    """
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer_id)
        contract = LeaseContract.objects.get(pk=contract_id, customer_id=customer_id)
        if contract.status == ContractStatus.CANCELLED:
            raise DomainError(
                "This contract is cancelled; it is no longer charged.", code="contract_cancelled"
            )
        method = (
            PaymentMethod.objects.get(pk=method_id, customer_id=customer_id)
            if method_id is not None
            else None
        )
        _contract_method_write(contract.pk, method, customer=customer, actor=actor)
    return method


# --- Refunds -----------------------------------------------------------------------


# Refunds that send back money an invoice did not owe carry this in their idempotency key.
EXCESS = "excess"


def _returns_excess(refund: Refund) -> bool:
    return f"-{EXCESS}-" in refund.idempotency_key


def _refund_request_locked(
    invoice: Invoice,
    payment: Payment,
    *,
    amount: Decimal | None,
    reason: str,
    returns_excess: bool,
    actor: Actor,
    credit_note_id: int | None = None,
) -> Refund:
    """Write the pending Refund (caller holds the invoice and payment locks)."""
    if credit_note_id is not None:
        # One refund per credit note and payment: a second run of the same credit note's
        # refund finds it instead of sending the money twice.
        previous = Refund.objects.filter(
            payment=payment,
            idempotency_key__startswith=f"payment-{payment.pk}-cn-{credit_note_id}-",
        )
        done = previous.exclude(status=RefundStatus.FAILED).first()
        if done:
            return done
        key = f"payment-{payment.pk}-cn-{credit_note_id}-{previous.count() + 1}"
    elif returns_excess:
        previous = Refund.objects.filter(
            payment=payment, idempotency_key__startswith=f"payment-{payment.pk}-{EXCESS}"
        )
        done = previous.exclude(status=RefundStatus.FAILED).first()
        if done:
            return done
        key = f"payment-{payment.pk}-{EXCESS}-{previous.count() + 1}"
    else:
        key = f"payment-{payment.pk}-refund-{payment.refunds.count() + 1}"
    if payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.HELD):
        raise DomainError(
            f"Payment {payment.pk} is {payment.get_status_display().lower()}; "
            "only a succeeded payment can be refunded, or a held one.",
            code="refund_state",
        )
    if not (payment.provider_payment_id or payment.provider_charge_id):
        raise DomainError(
            f"Payment {payment.pk} has no reference at the provider; refund it by hand.",
            code="refund_no_reference",
        )
    pending = sum((r.amount for r in payment.refunds.filter(status=RefundStatus.PENDING)), ZERO)
    available = payment.amount_collected - payment.amount_refunded - pending
    amount = quantize(amount) if amount is not None else available
    if returns_excess:
        # Only what the invoice does not hold: a refund made at the provider since the excess
        # was found may have returned part of it already.
        amount = min(amount, payment_excess_left(payment))
        if amount <= 0:
            raise DomainError(
                f"Nothing of payment {payment.pk} is left to return.", code="refund_nothing_left"
            )
    if amount <= 0 or amount > available:
        raise DomainError(
            f"Cannot refund {amount}: {available} of this payment can still be refunded.",
            code="refund_amount",
        )
    refund = Refund.objects.create(
        payment=payment,
        amount=amount,
        reason=reason[:200],
        idempotency_key=key,
        credit_note_id=credit_note_id,
    )
    audit_record(
        actor=actor,
        action="refund.requested",
        target=refund,
        customer=invoice.customer,
        after={
            "amount": amount,
            "payment": payment.pk,
            "returns_excess": returns_excess,
            "credit_note": credit_note_id,
        },
        note=reason,
    )
    return refund


def payment_refund(
    *,
    payment_id: int,
    amount: Decimal | None,
    actor: Actor,
    reason: str = "",
    returns_excess: bool = False,
    credit_note_id: int | None = None,
) -> Refund:
    """Send `amount` (None: all that is left) of a payment back through its provider.

    A pending Refund is written first (under the invoice and payment locks, so two
    refunds never exceed the payment); the provider's confirmation (webhook, or the
    sandbox at once) makes it succeeded through payment_record_refund. Returning a
    duplicate's excess is done once per payment.
    """
    with transaction.atomic():
        invoice, payment = lock_payment(payment_id)
        unsent = payment.refunds.filter(
            status=RefundStatus.PENDING, provider_refund_id=None
        ).first()
        if unsent is not None:
            # The provider could not be reached last time: send the same refund again under
            # its own idempotency key, so it is made once whatever the timeout hid.
            if amount is not None and quantize(amount) != unsent.amount:
                raise DomainError(
                    f"A refund of {unsent.amount} of this payment is still being sent; "
                    "try again in a few minutes.",
                    code="refund_in_progress",
                )
            refund, amount = unsent, unsent.amount
        else:
            refund = _refund_request_locked(
                invoice,
                payment,
                amount=amount,
                reason=reason,
                returns_excess=returns_excess,
                actor=actor,
                credit_note_id=credit_note_id,
            )
            if refund.provider_refund_id or refund.status != RefundStatus.PENDING:
                return refund  # already on its way back (or back)
            amount = refund.amount
        key = refund.idempotency_key
    provider = get_provider(payment.provider)
    try:
        outcome = provider.refund_create(
            payment=payment,
            amount_minor=to_minor_units(amount),
            idempotency_key=key,
            reason="duplicate" if _returns_excess(refund) else reason,
        )
    except ProviderUnavailable:
        raise  # still pending: reconciliation (or the next click) sends it again
    except PaymentError as exc:
        refund_mark_failed(refund_id=refund.pk, actor=actor, note=exc.message)
        raise
    with transaction.atomic():
        invoice, _locked = lock_payment(payment_id)
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
        confirmed = Refund.objects.filter(provider_refund_id=outcome.id).exclude(pk=refund.pk)
        if confirmed.exists():
            return _refund_merge_locked(
                invoice, placeholder=refund, confirmed=confirmed.get(), actor=actor
            )
        if refund.provider_refund_id is None:
            refund.provider_refund_id = outcome.id
            refund.save(update_fields=["provider_refund_id"])
        elif refund.provider_refund_id != outcome.id:
            # Another refund of the same amount made at the provider meanwhile was taken
            # for this one; this one's own event records it when it comes.
            logger.error(
                "STAFF: refund %s of payment %s was matched to provider refund %s, but the "
                "provider answered %s; check the reasons of both",
                refund.pk,
                payment_id,
                refund.provider_refund_id,
                outcome.id,
            )
    if outcome.status == "succeeded" and provider.confirms_refunds_synchronously:
        provider_event_apply(
            ProviderEvent(
                kind=EventKind.REFUNDED,
                payment_id=payment.pk,
                refunds=((outcome.id, outcome.amount),),
            ),
            actor=actor,
        )
        if outcome.fails_later:
            provider_event_apply(
                ProviderEvent(
                    kind=EventKind.REFUND_FAILED,
                    payment_id=payment.pk,
                    refunds=((outcome.id, outcome.amount),),
                    failure_code=outcome.fails_later,
                ),
                actor=provider.name,
            )
    elif outcome.status == "failed":
        return refund_mark_failed(
            refund_id=refund.pk, actor=actor, note="the provider refused the refund"
        )
    return Refund.objects.get(pk=refund.pk)


def _refund_merge_locked(
    invoice: Invoice, *, placeholder: Refund, confirmed: Refund, actor: Actor
) -> Refund:
    """The provider's confirmation was recorded as a row of its own before our call returned
    (caller holds the locks): the staff's reason moves onto it and the placeholder, which
    would otherwise be sent again, goes, both in the audit log."""
    if placeholder.reason and confirmed.reason in ("", PROVIDER_REFUND_REASON):
        confirmed.reason = placeholder.reason
        confirmed.save(update_fields=["reason"])
    if placeholder.credit_note_id and not confirmed.credit_note_id:
        confirmed.credit_note_id = placeholder.credit_note_id
        confirmed.save(update_fields=["credit_note"])
        _uncount_credit_note_refund_locked(invoice, confirmed, actor=actor)
    audit_record(
        actor=actor,
        action="refund.merged",
        target=confirmed,
        customer=invoice.customer,
        before={
            "placeholder": placeholder.pk,
            "idempotency_key": placeholder.idempotency_key,
            "status": placeholder.status,
            "amount": placeholder.amount,
        },
        after={"provider_refund_id": confirmed.provider_refund_id, "reason": confirmed.reason},
        note=placeholder.reason,
    )
    placeholder.delete()
    return confirmed


def _uncount_credit_note_refund_locked(invoice: Invoice, refund: Refund, *, actor: Actor) -> None:
    """The provider's confirmation of a credit note's refund arrived first and was counted
    on the invoice as a refund of its own; the credit note already accounts for it."""
    if invoice.status in PAYABLE_STATUSES or invoice.amount_refunded <= 0:
        return
    invoice.amount_refunded = max(ZERO, invoice.amount_refunded - refund.invoice_share)
    if invoice.status == InvoiceStatus.REFUND:
        set_invoice_status(
            invoice,
            InvoiceStatus.PAID,
            actor=actor,
            now=invoice.paid_at,
            note="the refund belongs to a credit note",
            extra={"refund": refund.pk},
        )
        return
    invoice.state_version += 1
    invoice.save(update_fields=["amount_refunded", "state_version", "updated_at"])


# --- Credit notes -------------------------------------------------------------------


def credit_note_refund(*, credit_note_id: int, actor: Actor) -> list[Refund]:
    """Send a credit note's refund_amount back to the payments of its invoice, newest first.

    Idempotent: each payment gets at most one refund per credit note, and a credit note
    whose refund was handled (sent, or handed to staff) is left alone. What cannot go back
    through a provider (a bank transfer recorded by staff, a payment already refunded) is
    handed to staff with an alert. ProviderUnavailable propagates: nothing is marked
    handled, and the task (or reconciliation) sends it again under the same keys.
    """
    note = CreditNote.objects.select_related("invoice").get(pk=credit_note_id)
    if note.refund_handled_at is not None or note.refund_amount <= 0:
        return []
    sent = Refund.objects.filter(credit_note=note).exclude(status=RefundStatus.FAILED)
    to_send = note.refund_amount - sum((r.amount for r in sent), ZERO)
    made: list[Refund] = []
    payments = Payment.objects.filter(
        invoice_id=note.invoice_id, status=PaymentStatus.SUCCEEDED, is_duplicate=False
    ).order_by("-succeeded_at", "-pk")
    for payment in payments:
        if to_send <= 0:
            break
        mine = sent.filter(payment=payment).first()
        if mine is not None:
            continue  # this payment already carries its part
        if not (payment.provider_payment_id or payment.provider_charge_id):
            continue
        pending = sum((r.amount for r in payment.refunds.filter(status=RefundStatus.PENDING)), ZERO)
        available = payment.amount_collected - payment.amount_refunded - pending
        if available <= 0:
            continue
        amount = min(available, to_send)
        try:
            refund = payment_refund(
                payment_id=payment.pk,
                amount=amount,
                actor=actor,
                reason=f"Credit note {note.number}",
                credit_note_id=note.pk,
            )
        except ProviderUnavailable:
            raise
        except (DomainError, PaymentError) as exc:
            logger.warning(
                "credit note %s: refund of payment %s not sent: %s",
                note.number,
                payment.pk,
                getattr(exc, "message", exc),
            )
            continue
        made.append(refund)
        to_send -= amount
    with transaction.atomic():
        invoice = lock_invoice(note.invoice_id)
        note = CreditNote.objects.select_for_update().get(pk=credit_note_id)
        if note.refund_handled_at is not None:
            return made
        note.refund_handled_at = timezone.now()
        note.save(update_fields=["refund_handled_at"])
        audit_record(
            actor=actor,
            action="credit_note.refund_sent",
            target=note,
            customer=invoice.customer,
            after={"refunds": [r.pk for r in made], "not_sent": max(to_send, ZERO)},
        )
        if to_send > 0:
            _alert_staff_after_commit(
                f"Credit note {note.number}: {to_send} {note.currency} to return by hand",
                f"Credit note {note.number} of invoice {invoice} refunds {note.refund_amount} "
                f"{note.currency}; {to_send} {note.currency} of it could not be sent back "
                "through a payment provider (e.g. it was paid by bank transfer). Return it "
                "to the customer another way, or add it to their credit balance in admin.",
            )
    return made


@receiver(signals.payment_needs_refund, dispatch_uid="billing.payments.refund_excess")
def refund_excess_on_signal(sender, payment_id: int, amount: Decimal, **kwargs) -> None:
    """Money that arrived for an invoice that no longer owed it goes back at once."""
    try:
        payment_refund(
            payment_id=payment_id,
            amount=amount,
            actor=AUTO_REFUND,
            reason="duplicate",
            returns_excess=True,
        )
    except (DomainError, PaymentError) as exc:
        if exc.code == "refund_nothing_left":
            logger.info("payment %s: its excess went back meanwhile", payment_id)
            return
        logger.error(
            "STAFF: payment %s received %s that must be refunded by hand: %s",
            payment_id,
            amount,
            getattr(exc, "message", exc),
        )


# --- Provider events (webhooks, the sandbox, reconciliation) ----------------------------


def find_payment(
    event: ProviderEvent, *, among: Mapping[tuple[str, str], Payment] | None = None
) -> Payment | None:
    """The payment the event is about: by our id (if its invoice agrees), else by the
    provider's checkout, payment and charge ids, in that order.

    `among`: payments read beforehand for a batch of events (payments_for_events), looked
    up there instead of in the database."""

    def first(field: str, value) -> Payment | None:
        if among is not None:
            return among.get((field, str(value)))
        return Payment.objects.filter(**{field: value}).first()

    if event.payment_id:
        payment = first("pk", event.payment_id)
        if payment and event.invoice_id in (None, payment.invoice_id):
            return payment
    for field, value in _provider_refs(event):
        if value:
            payment = first(field, value)
            if payment:
                return payment
    return None


def _provider_refs(event: ProviderEvent) -> tuple[tuple[str, str], ...]:
    return (
        ("provider_checkout_id", event.checkout_id),
        ("provider_payment_id", event.provider_payment_id),
        ("provider_charge_id", event.charge_id),
    )


def payments_for_events(events: list[ProviderEvent]) -> dict[tuple[str, str], Payment]:
    """Every payment any of the events could name, in one query, by (field, value) as
    find_payment(among=...) looks them up; each with `lock_customer_id` (its invoice's
    customer)."""
    refs: dict[str, set] = {"pk": {e.payment_id for e in events if e.payment_id}}
    for event in events:
        for field, value in _provider_refs(event):
            if value:
                refs.setdefault(field, set()).add(value)
    wanted = Q()
    for field, values in refs.items():
        if values:
            wanted |= Q(**{f"{field}__in": sorted(values, key=str)})
    found: dict[tuple[str, str], Payment] = {}
    if not wanted:
        return found
    payments = Payment.objects.filter(wanted).annotate(lock_customer_id=F("invoice__customer_id"))
    for payment in payments:
        found[("pk", str(payment.pk))] = payment
        for field in refs:
            value = getattr(payment, field) if field != "pk" else None
            if value:
                # The first in the model's order, as .first() would find it.
                found.setdefault((field, str(value)), payment)
    return found


def _find_customer(event: ProviderEvent) -> Customer | None:
    if event.customer_id:
        return Customer.objects.filter(pk=event.customer_id).first()
    if event.provider_customer_id:
        return Customer.objects.filter(stripe_customer_id=event.provider_customer_id).first()
    return None


def _succeed(payment: Payment, event: ProviderEvent, *, actor: Actor) -> None:
    # Also for an attempt we had cancelled: the service applies the money if the invoice
    # still owes it, and otherwise flags it as a duplicate that is refunded automatically.
    # What the provider reported is passed as it is: an event without an amount is held.
    payment_record_success(
        payment_id=payment.pk,
        actor=actor,
        amount_received=event.amount_received,
        currency_received=event.currency,
        provider_customer_id=event.provider_customer_id,
        provider_payment_id=event.provider_payment_id or None,
        provider_charge_id=event.charge_id,
        brand=event.brand,
        last4=event.last4,
    )


class EventOutOfOrder(Exception):
    """The event can only be applied after one that has not arrived yet: it is stored and
    applied again later (billing.payments.webhooks retries it after the next event applied
    to its payment, and the sweep retries it)."""


def _record_refunds(payment: Payment, event: ProviderEvent, *, actor: Actor) -> None:
    refunds = list(event.refunds)
    known_total = sum((amount for _, amount in refunds), ZERO)
    wanted = event.extra.get("amount_refunded")
    if wanted is not None and wanted > known_total and payment.provider == "stripe":
        from .providers.stripe_provider import StripeProvider

        refunds = StripeProvider().refunds_for_charge(charge_id=event.charge_id)
    for refund_id, amount in refunds:
        placeholder = _our_refund(payment, refund_id, amount)
        returns_excess = bool(placeholder and _returns_excess(placeholder))
        if placeholder and placeholder.status == RefundStatus.SUCCEEDED:
            continue
        try:
            payment_record_refund(
                payment_id=payment.pk,
                amount=amount,
                provider_refund_id=refund_id,
                actor=actor,
                reason=placeholder.reason if placeholder else PROVIDER_REFUND_REASON,
                returns_excess=returns_excess,
                placeholder_id=placeholder.pk if placeholder else None,
            )
        except DomainError as exc:
            if exc.code != "refund_amount":
                raise
            # The provider never refunds more than is left, so a refund we hold as succeeded
            # has failed there since and its failure is still on its way.
            raise EventOutOfOrder(
                f"refund {refund_id} of payment {payment.pk} waits for a refund failure: "
                f"{exc.message}"
            ) from exc


def _our_refund(payment: Payment, refund_id: str, amount: Decimal) -> Refund | None:
    """Our row for a provider refund: by its id, else the refund we sent whose answer has not
    come back yet (pending, no provider id, same payment and amount; one at a time)."""
    known = Refund.objects.filter(provider_refund_id=refund_id).first()
    if known is not None:
        return known
    return (
        payment.refunds.filter(
            status=RefundStatus.PENDING, provider_refund_id__isnull=True, amount=quantize(amount)
        )
        .order_by("created_at")
        .first()
    )


def _record_refund_failures(payment: Payment, event: ProviderEvent, *, actor: Actor) -> None:
    for refund_id, amount in event.refunds:
        ours = _our_refund(payment, refund_id, amount)
        refund_record_failure(
            payment_id=payment.pk,
            provider_refund_id=refund_id,
            amount=amount,
            failure_reason=event.failure_code or "failed",
            actor=actor,
            placeholder_id=ours.pk if ours else None,
        )


def _dispute(payment: Payment, event: ProviderEvent, *, actor: Actor) -> None:
    final = {"won", "lost", "warning_closed"}
    with transaction.atomic():
        invoice, locked = lock_payment(payment.pk)
        if locked.dispute_status in final and event.dispute_status not in final:
            return
        if locked.dispute_status != event.dispute_status:
            before = locked.dispute_status
            locked.dispute_status = event.dispute_status[:24]
            locked.save(update_fields=["dispute_status", "updated_at"])
            audit_record(
                actor=actor,
                action="payment.dispute",
                target=locked,
                customer=invoice.customer,
                before={"dispute": before},
                after={"dispute": locked.dispute_status, "dispute_id": event.dispute_id},
            )
    if event.kind == EventKind.DISPUTE_CLOSED and event.dispute_status == "lost":
        payment.refresh_from_db()
        if Refund.objects.filter(provider_refund_id=event.dispute_id).exists():
            return
        left = payment.amount_collected - payment.amount_refunded
        amount = min(event.dispute_amount or left, left)
        if amount > 0:
            payment_record_refund(
                payment_id=payment.pk,
                amount=amount,
                provider_refund_id=event.dispute_id,
                actor=actor,
                reason="dispute lost",
            )


def provider_event_apply(event: ProviderEvent, *, actor: Actor) -> str:
    """Apply one provider event through the money services; returns what was done.

    Safe in any order and any number of times: every service it calls is idempotent
    and only moves state forward. An event for a payment or customer we do not know
    is logged for staff and answered "unknown".
    """
    return provider_event_apply_to_payment(event, actor=actor)[0]


def provider_event_apply_to_payment(
    event: ProviderEvent, *, actor: Actor, payment: Payment | None = None
) -> tuple[str, Payment | None]:
    """provider_event_apply, also naming the payment the event was applied to (as it was
    found, before the apply), or None: webhooks replays what waited for that payment.

    `payment`: the one find_payment finds for this event, read just before by the caller
    (a batch reads them all at once); None: found here."""
    if event.kind in (EventKind.METHOD_ATTACHED, EventKind.SETUP_COMPLETED):
        customer = _find_customer(event)
        if customer is None:
            logger.warning("STAFF: payment method event for unknown customer %s", event)
            return "unknown customer", None
        info = event.method
        provider_name = "sandbox" if event.provider_customer_id.startswith("sandbox_") else "stripe"
        if event.kind == EventKind.SETUP_COMPLETED:
            from .providers.stripe_provider import setup_intent_method

            info = setup_intent_method(event.setup_id)
        if info is None:
            return "no payment method", None
        _method_upsert(customer=customer, provider=provider_name, info=info, actor=actor)
        return "method saved", None
    if event.kind == EventKind.METHOD_DETACHED:
        for provider_name in ("stripe", "sandbox"):
            _method_forget(provider_id=event.method.id, provider=provider_name, actor=actor)
        return "method removed", None

    payment = payment or find_payment(event)
    if payment is None:
        logger.warning(
            "STAFF: %s for an unknown payment (invoice %s, payment %s, intent %s)",
            event.kind,
            event.invoice_id,
            event.payment_id,
            event.provider_payment_id or event.checkout_id or event.charge_id,
        )
        return UNKNOWN_PAYMENT_NOTE, None
    try:
        if event.kind == EventKind.PAYMENT_SUCCEEDED:
            # payment_record_success fills in the provider ids under its own lock (also when
            # the money was recorded already): no separate lock and write for them first.
            _succeed(payment, event, actor=actor)
            return "applied", payment
        _remember_provider_ids(
            payment.pk, provider_payment_id=event.provider_payment_id, charge_id=event.charge_id
        )
        payment.refresh_from_db()
        if event.kind == EventKind.PAYMENT_PROCESSING:
            created = event.extra.get("created")
            payment_record_processing(
                payment_id=payment.pk,
                actor=actor,
                event_created=datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
                if created
                else None,
                provider_payment_id=event.provider_payment_id or None,
                brand=event.brand,
                last4=event.last4,
            )
        elif event.kind in (EventKind.PAYMENT_FAILED, EventKind.PAYMENT_REQUIRES_ACTION):
            payment_record_failure(
                payment_id=payment.pk,
                actor=actor,
                code=event.failure_code or "payment_failed",
                message=event.failure_message or CardDeclined.default_message,
                requires_action=event.kind == EventKind.PAYMENT_REQUIRES_ACTION,
            )
        elif event.kind == EventKind.CHECKOUT_EXPIRED:
            payment_cancel(payment_id=payment.pk, actor=actor, reason="checkout expired")
        elif event.kind in (
            EventKind.REFUNDED,
            EventKind.REFUND_FAILED,
            EventKind.DISPUTE_OPENED,
            EventKind.DISPUTE_CLOSED,
        ):
            # A refunded or disputed charge was paid, whatever order the events came in. An
            # event that does not say how much was paid (a dispute, a refund object) waits
            # for the one that does, and is replayed when it has been applied.
            if payment.status not in MONEY_RECORDED:
                if event.amount_received is None:
                    return UNKNOWN_PAYMENT_NOTE, payment
                _succeed(payment, event, actor=actor)
            payment.refresh_from_db()
            if event.kind == EventKind.REFUNDED:
                _record_refunds(payment, event, actor=actor)
            elif event.kind == EventKind.REFUND_FAILED:
                _record_refund_failures(payment, event, actor=actor)
            else:
                _dispute(payment, event, actor=actor)
    except InvalidTransition as exc:
        logger.warning("STAFF: %s not applied to payment %s: %s", event.kind, payment.pk, exc)
        return "not applicable", payment
    return "applied", payment


# --- Reconciliation ----------------------------------------------------------------


def payments_reconcile(*, actor: Actor, older_than_minutes: int = 5) -> int:
    """Re-read unfinished payments from their provider and apply what events missed.

    Returns how many payments changed state. A provider that cannot be reached is
    logged and skipped; the next run tries again.
    """
    cutoff = timezone.now() - datetime.timedelta(minutes=older_than_minutes)
    changed = 0
    candidates = Payment.objects.filter(
        status__in=[*_OPEN_STATES, PaymentStatus.FAILED],
        created_at__lte=cutoff,
        created_at__gte=timezone.now() - datetime.timedelta(days=30),
    ).exclude(provider__in=["manual", "sandbox"])
    for payment in candidates.iterator():
        try:
            outcome = get_provider(payment.provider).payment_retrieve(payment=payment)
        except PaymentError as exc:
            logger.warning("reconcile: payment %s not read: %s", payment.pk, exc.message)
            continue
        if outcome is None or outcome.status == "pending":
            continue
        if outcome.status == "processing" and payment.status == PaymentStatus.PROCESSING:
            continue
        if outcome.status == "failed" and payment.status == PaymentStatus.FAILED:
            continue
        before = payment.status
        _apply_outcome(payment, outcome, actor=actor)
        payment.refresh_from_db()
        changed += payment.status != before
    return (
        changed
        + _refunds_resend(actor=actor, cutoff=cutoff)
        + _credit_notes_resend(actor=actor, cutoff=cutoff)
    )


def _credit_notes_resend(*, actor: Actor, cutoff: datetime.datetime) -> int:
    """Credit notes whose refund was never sent (the task was lost, the provider was down)."""
    sent = 0
    waiting = CreditNote.objects.filter(
        refund_amount__gt=0, refund_handled_at__isnull=True, created_at__lte=cutoff
    ).values_list("pk", flat=True)
    for credit_note_id in waiting:
        try:
            sent += len(credit_note_refund(credit_note_id=credit_note_id, actor=actor))
        except PaymentError as exc:
            logger.warning("reconcile: credit note %s not refunded: %s", credit_note_id, exc)
    return sent


def _refunds_resend(*, actor: Actor, cutoff: datetime.datetime) -> int:
    """Send again what must go back but did not reach the provider: refunds left pending by
    an outage (same key, so made once), and duplicates whose automatic refund never started."""
    work = [
        (r.payment_id, r.amount, _returns_excess(r))
        for r in Refund.objects.filter(
            status=RefundStatus.PENDING, provider_refund_id=None, created_at__lte=cutoff
        )
    ]
    owed_back = (
        Payment.objects.filter(
            is_duplicate=True, status=PaymentStatus.SUCCEEDED, succeeded_at__lte=cutoff
        )
        .exclude(refunds__status__in=[RefundStatus.PENDING, RefundStatus.SUCCEEDED])
        # The processor could not return it (e.g. the card was closed): sending it again
        # fails again, so staff (who were told) return it another way.
        .exclude(refunds__failure_reason__gt="")
        .exclude(provider="manual")
    )
    work += [(p.pk, p.amount_collected - p.amount_refunded, True) for p in owed_back]
    sent = 0
    for payment_id, amount, returns_excess in work:
        try:
            payment_refund(
                payment_id=payment_id,
                amount=amount,
                actor=actor,
                reason="duplicate" if returns_excess else "",
                returns_excess=returns_excess,
            )
        except (DomainError, PaymentError) as exc:
            logger.warning("reconcile: refund of payment %s not sent: %s", payment_id, exc)
            continue
        sent += 1
    return sent


def payment_methods_sync_all(*, actor: Actor) -> int:
    """Make our saved cards match the provider's for every customer it knows."""
    provider = get_provider()
    count = 0
    for customer in Customer.objects.exclude(stripe_customer_id="").iterator():
        infos = provider.methods_list(customer_ref=customer.stripe_customer_id)
        for info in infos:
            _method_upsert(customer=customer, provider=provider.name, info=info, actor=actor)
        keep = {info.id for info in infos}
        for stale in PaymentMethod.objects.filter(customer=customer, provider=provider.name):
            if stale.provider_id not in keep:
                _method_forget(provider_id=stale.provider_id, provider=provider.name, actor=actor)
        count += 1
    return count
