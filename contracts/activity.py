"""How customers read their contract entries (see core.activity)."""

from core.activity import actor_phrase, customer_action

from .models import CancellationReason, contract_reference
from .selectors import CUSTOMER_FIELD_ORDER, details_field_label


def _ref(entry) -> str:
    return contract_reference(int(entry.object_id)) if entry.object_id.isdigit() else "—"


@customer_action("contract.created", kind="contracts")
def _created(entry, loaded) -> str:
    blocks = ", ".join(entry.after.get("blocks") or [])
    return f"Contract {_ref(entry)} started" + (f" for {blocks}" if blocks else "")


@customer_action("contract.past_due", kind="contracts")
def _past_due(entry, loaded) -> str:
    return f"Contract {_ref(entry)} is past due: one of its invoices is overdue"


@customer_action("contract.active", kind="contracts")
def _restored(entry, loaded) -> str:
    return f"Contract {_ref(entry)} is back in good standing"


@customer_action("contract.cancelled", kind="contracts")
def _cancelled(entry, loaded) -> str:
    reason = {
        CancellationReason.NON_PAYMENT: " for non-payment",
        CancellationReason.CUSTOMER_REQUEST: " at your request",
        CancellationReason.STAFF: " by our billing team",
    }.get(entry.after.get("reason") or "", actor_phrase(entry))
    return f"Contract {_ref(entry)} cancelled{reason}"


@customer_action("contract.grace_extended", kind="contracts")
def _extended(entry, loaded) -> str:
    until = entry.after.get("grace_extended_until")
    return f"Payment deadline of contract {_ref(entry)} extended to {until}{actor_phrase(entry)}"


@customer_action("customer.details_changed", kind="account")
def _details(entry, loaded) -> str:
    """Which fields changed (their values are on the Billing details page's history)."""
    changed = [f for f in CUSTOMER_FIELD_ORDER if f in entry.before or f in entry.after]
    by = " by our billing team" if entry.actor and entry.actor.is_staff else actor_phrase(entry)
    fields = ", ".join(details_field_label(f).lower() for f in changed)
    return f"Billing details changed{by}" + (f": {fields}" if fields else "")
