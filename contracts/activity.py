"""How customers read their contract entries (see core.activity)."""

from django.utils.translation import get_language
from django.utils.translation import gettext as _

from core.activity import actor_phrase, customer_action, date_text

from .models import CancellationReason, contract_reference
from .selectors import CUSTOMER_FIELD_ORDER, details_field_label


def _ref(entry) -> str:
    return contract_reference(int(entry.object_id)) if entry.object_id.isdigit() else "—"


@customer_action("contract.created", kind="contracts")
def _created(entry, loaded) -> str:
    blocks = ", ".join(entry.after.get("blocks") or [])
    if blocks:
        return _("Contract %(contract)s started for %(blocks)s") % {
            "contract": _ref(entry),
            "blocks": blocks,
        }
    return _("Contract %(contract)s started") % {"contract": _ref(entry)}


@customer_action("contract.past_due", kind="contracts")
def _past_due(entry, loaded) -> str:
    return _("Contract %(contract)s is past due: one of its invoices is overdue") % {
        "contract": _ref(entry)
    }


@customer_action("contract.active", kind="contracts")
def _restored(entry, loaded) -> str:
    return _("Contract %(contract)s is back in good standing") % {"contract": _ref(entry)}


@customer_action("contract.cancelled", kind="contracts")
def _cancelled(entry, loaded) -> str:
    reason = entry.after.get("reason") or ""
    if reason == CancellationReason.NON_PAYMENT:
        text = _("Contract %(contract)s cancelled for non-payment")
    elif reason == CancellationReason.CUSTOMER_REQUEST:
        text = _("Contract %(contract)s cancelled at your request")
    elif reason == CancellationReason.STAFF:
        text = _("Contract %(contract)s cancelled by our billing team")
    else:
        return _("Contract %(contract)s cancelled%(by)s") % {
            "contract": _ref(entry),
            "by": actor_phrase(entry),
        }
    return text % {"contract": _ref(entry)}


@customer_action("contract.grace_extended", kind="contracts")
def _extended(entry, loaded) -> str:
    return _("Payment deadline of contract %(contract)s extended to %(date)s%(by)s") % {
        "contract": _ref(entry),
        "date": date_text(entry.after.get("grace_extended_until")),
        "by": actor_phrase(entry),
    }


@customer_action("customer.details_changed", kind="account")
def _details(entry, loaded) -> str:
    """Which fields changed (their values are on the Billing details page's history)."""
    changed = [f for f in CUSTOMER_FIELD_ORDER if f in entry.before or f in entry.after]
    staff = entry.actor and entry.actor.is_staff
    by = _(" by our billing team") if staff else actor_phrase(entry)
    # German capitalises nouns: the field names keep their capitals there.
    fields = ", ".join(_lowered(details_field_label(f)) for f in changed)
    if fields:
        return _("Billing details changed%(by)s: %(fields)s") % {"by": by, "fields": fields}
    return _("Billing details changed%(by)s") % {"by": by}


def _lowered(label: str) -> str:
    return label if (get_language() or "en").startswith("de") else label.lower()
