"""How customers read the invoice entries of their audit log (see core.activity)."""

from django.utils.translation import gettext as _

from core.activity import actor_phrase, customer_action, date_text, money_text


def amount(value, currency: str = "") -> str:
    """An audit entry's amount (stored as text) as the page's language writes money."""
    return money_text(value, currency)


@customer_action("invoice.open", kind="invoices")
def _issued(entry, loaded) -> str:
    after = entry.after
    values = {"number": after.get("number") or entry.object_repr}
    if after.get("total") is not None:
        values["amount"] = amount(after["total"], after.get("currency", ""))
    if after.get("due_date"):
        values["due"] = date_text(after["due_date"])
    if "amount" in values and "due" in values:
        return _("Invoice %(number)s issued for %(amount)s, due %(due)s") % values
    if "amount" in values:
        return _("Invoice %(number)s issued for %(amount)s") % values
    if "due" in values:
        return _("Invoice %(number)s issued, due %(due)s") % values
    return _("Invoice %(number)s issued") % values


@customer_action("invoice.void", kind="invoices")
def _voided(entry, loaded) -> str:
    return _("Invoice %(number)s voided%(by)s: it is not to be paid") % {
        "number": entry.object_repr,
        "by": actor_phrase(entry),
    }


@customer_action("invoice.uncollectible", kind="invoices")
def _written_off(entry, loaded) -> str:
    return _("Invoice %(number)s written off as uncollectible%(by)s") % {
        "number": entry.object_repr,
        "by": actor_phrase(entry),
    }


@customer_action("invoice.refund", kind="invoices")
def _refunded(entry, loaded) -> str:
    return _("Invoice %(number)s refunded in full") % {"number": entry.object_repr}
