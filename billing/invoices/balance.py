"""The customer credit balance: credit per customer and currency, and its ledger.

Stripe's customer balance semantics, with credit kept as a positive amount: a credit note
can leave money already paid as credit; finalising an invoice uses the credit of the
invoice's currency first (shown as "Applied balance"); voiding that invoice gives it back;
staff may adjust it. Currencies never mix: each currency is a row of its own, locked while
it moves, and every movement is a ledger row and an audit entry.

Lock order: the invoice (lock_invoice) before the balance row, everywhere.
"""

from decimal import Decimal

from django.db import transaction

from contracts.models import Customer
from core.audit import Actor, audit_record
from core.errors import DomainError
from core.money import ZERO, normalize_currency, quantize

from .models import (
    BalanceTransactionKind,
    CreditNote,
    CustomerBalance,
    CustomerBalanceTransaction,
    Invoice,
)


def lock_balance(customer_id: int, currency: str) -> CustomerBalance:
    """The customer's balance row in `currency`, created if need be, locked (caller's atomic)."""
    CustomerBalance.objects.bulk_create(
        [CustomerBalance(customer_id=customer_id, currency=currency)], ignore_conflicts=True
    )
    return CustomerBalance.objects.select_for_update().get(
        customer_id=customer_id, currency=currency
    )


def balance_move_locked(
    balance: CustomerBalance,
    *,
    amount: Decimal,
    kind: str,
    actor: Actor,
    customer: Customer,
    invoice: Invoice | None = None,
    credit_note: CreditNote | None = None,
    note: str = "",
) -> CustomerBalanceTransaction:
    """Add (amount > 0) or use (amount < 0) credit; the caller holds the row lock."""
    ending = balance.amount + amount
    if ending < 0:
        raise DomainError(
            f"The customer has {balance.amount} {balance.currency} of credit; "
            f"{-amount} {balance.currency} cannot be taken from it.",
            code="balance_insufficient",
        )
    before = balance.amount
    balance.amount = ending
    balance.save(update_fields=["amount", "updated_at"])
    entry = CustomerBalanceTransaction.objects.create(
        balance=balance,
        kind=kind,
        amount=amount,
        ending_balance=ending,
        invoice=invoice,
        credit_note=credit_note,
        note=note[:300],
    )
    audit_record(
        actor=actor,
        action=f"balance.{kind}",
        target=balance,
        customer=customer,
        before={"balance": before, "currency": balance.currency},
        after={
            "balance": ending,
            "amount": amount,
            "invoice": invoice.number if invoice else None,
            "credit_note": credit_note.number if credit_note else None,
        },
        note=note,
    )
    return entry


def apply_balance_locked(invoice: Invoice, *, actor: Actor) -> Decimal:
    """Use the customer's credit in the invoice's currency on it (caller locks the invoice).

    Sets invoice.applied_balance (not saved: the finalising save writes it). Idempotent:
    an invoice that already has credit applied gets no more.
    """
    if invoice.applied_balance or invoice.total <= 0:
        return ZERO
    if not CustomerBalance.objects.filter(
        customer_id=invoice.customer_id, currency=invoice.currency, amount__gt=0
    ).exists():
        return ZERO  # nothing to lock on the billing run's common path
    balance = lock_balance(invoice.customer_id, invoice.currency)
    applied = min(balance.amount, invoice.total - invoice.pre_payment_credit_notes_amount)
    if applied <= 0:
        return ZERO
    balance_move_locked(
        balance,
        amount=-applied,
        kind=BalanceTransactionKind.APPLIED_TO_INVOICE,
        actor=actor,
        customer=invoice.customer,
        invoice=invoice,
        note=f"Applied to invoice {invoice.number}",
    )
    invoice.applied_balance = applied
    return applied


def unapply_balance_locked(invoice: Invoice, *, actor: Actor) -> Decimal:
    """A voided invoice gives the credit it used back (caller locks it; saves it after)."""
    returned = invoice.applied_balance
    if returned <= 0:
        return ZERO
    balance = lock_balance(invoice.customer_id, invoice.currency)
    balance_move_locked(
        balance,
        amount=returned,
        kind=BalanceTransactionKind.UNAPPLIED_FROM_INVOICE,
        actor=actor,
        customer=invoice.customer,
        invoice=invoice,
        note=f"Invoice {invoice.number} was voided",
    )
    invoice.applied_balance = ZERO
    return returned


def customer_balance_adjust(
    *, customer_id: int, currency: str, amount: Decimal, note: str, actor: Actor
) -> CustomerBalanceTransaction:
    """Staff add (amount > 0) or take away (amount < 0) credit, with a reason.

    Not idempotent by nature (two adjustments are two adjustments); the ledger keeps both.
    A balance never goes below zero: taking more than there is changes nothing.
    """
    currency = normalize_currency(currency)
    try:
        amount = Decimal(amount)
    except (ArithmeticError, TypeError, ValueError):
        raise DomainError("Enter the amount as a number such as 25.00 or -10.00.") from None
    if not amount.is_finite() or amount != quantize(amount) or amount == 0:
        raise DomainError(
            "Enter a non-zero amount with at most two decimals, such as 25.00 or -10.00.",
            code="amount",
        )
    if not note.strip():
        raise DomainError("Say why the balance is adjusted.", code="note")
    with transaction.atomic():
        customer = Customer.objects.get(pk=customer_id)
        balance = lock_balance(customer_id, currency)
        return balance_move_locked(
            balance,
            amount=amount,
            kind=BalanceTransactionKind.ADJUSTMENT,
            actor=actor,
            customer=customer,
            note=note.strip(),
        )


def customer_balances(customer: Customer) -> list[CustomerBalance]:
    """The customer's non-zero credit per currency."""
    return list(
        CustomerBalance.objects.filter(customer=customer, amount__gt=0).order_by("currency")
    )
