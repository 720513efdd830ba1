"""How customers read the invoice entries of their audit log (see core.activity)."""

from decimal import Decimal, InvalidOperation

from core.activity import actor_phrase, customer_action
from core.money import format_money


def amount(value, currency: str = "") -> str:
    """An audit entry's amount (stored as text) as the pages print money."""
    try:
        return format_money(Decimal(str(value)), currency).strip()
    except (InvalidOperation, TypeError, ValueError):
        return str(value)


@customer_action("invoice.open", kind="invoices")
def _issued(entry, loaded) -> str:
    after = entry.after
    text = f"Invoice {after.get('number') or entry.object_repr} issued"
    if after.get("total") is not None:
        text += f" for {amount(after['total'], after.get('currency', ''))}"
    if after.get("due_date"):
        text += f", due {after['due_date']}"
    return text


@customer_action("invoice.void", kind="invoices")
def _voided(entry, loaded) -> str:
    return f"Invoice {entry.object_repr} voided{actor_phrase(entry)}: it is not to be paid"


@customer_action("invoice.uncollectible", kind="invoices")
def _written_off(entry, loaded) -> str:
    return f"Invoice {entry.object_repr} written off as uncollectible{actor_phrase(entry)}"


@customer_action("invoice.refund", kind="invoices")
def _refunded(entry, loaded) -> str:
    return f"Invoice {entry.object_repr} refunded in full"
