"""How customers read payment, refund and saved-card entries (see core.activity)."""

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.utils.translation import gettext as _

from billing.invoices.activity import amount
from core.activity import activity_loader, actor_phrase, customer_action
from core.models import AuditEntry

from .models import Payment, Refund


def _payment_ids(entries: list[AuditEntry], payment_type: int, refund_type: int) -> set[int]:
    ids = set()
    for e in entries:
        if e.content_type_id == payment_type and e.object_id.isdigit():
            ids.add(int(e.object_id))
        elif (e.content_type_id == refund_type or e.action == "invoice.paid") and str(
            e.after.get("payment", "")
        ).isdigit():
            ids.add(int(e.after["payment"]))
    return ids


@activity_loader
def _load(entries: list[AuditEntry]) -> dict[str, Any]:
    """The payments a page of entries is about (with their invoices), and who started each:
    the person whose Pay online or saved-card payment it was. Two queries at most."""
    payment_type = ContentType.objects.get_for_model(Payment).pk
    refund_type = ContentType.objects.get_for_model(Refund).pk
    ids = _payment_ids(entries, payment_type, refund_type)
    if not ids:
        return {"payments": {}, "payers": {}}
    payments = {p.pk: p for p in Payment.objects.select_related("invoice").filter(pk__in=ids)}
    payers = {}
    started = AuditEntry.objects.filter(
        content_type_id=payment_type,
        object_id__in=[str(i) for i in ids],
        action="payment.created",
        actor__isnull=False,
        actor__is_staff=False,
    ).select_related("actor")
    for e in started:
        payers[int(e.object_id)] = e.actor.get_username()
    return {"payments": payments, "payers": payers}


def _payment(entry: AuditEntry, loaded: dict) -> Payment | None:
    key = entry.object_id if entry.action.startswith("payment.") else entry.after.get("payment")
    return loaded.get("payments", {}).get(int(key)) if str(key or "").isdigit() else None


def _invoice_part(payment: Payment | None) -> str:
    if payment and payment.invoice.number:
        return _(" for invoice %(number)s") % {"number": payment.invoice.number}
    return ""


def _method(payment: Payment | None) -> str:
    if payment and payment.method_last4:
        brand = payment.method_brand.capitalize() if payment.method_brand else _("Card")
        return f"{brand} •••• {payment.method_last4}"
    return ""


@customer_action("invoice.paid", kind="invoices")
def _paid(entry, loaded) -> str:
    # Built from parts (with, by, amount), each a phrase of its own: every combination
    # occurs, and a msgid per combination would be eight near-copies.
    payment = _payment(entry, loaded)
    text = _("Invoice %(number)s paid") % {"number": entry.object_repr}
    method = entry.after.get("method") or _method(payment)
    if method:
        text += _(" with %(method)s") % {"method": method}
    payer = loaded.get("payers", {}).get(payment.pk) if payment else None
    if payer:
        text += _(" by %(person)s") % {"person": payer}
    elif entry.actor_id and entry.actor and entry.actor.is_staff:
        text += _(" (recorded by our billing team)")
    paid = entry.after.get("amount_paid")
    if paid is not None:
        text += f": {amount(paid, payment.currency if payment else '')}"
    return text


@customer_action("payment.failed", kind="payments")
def _failed(entry, loaded) -> str:
    payment = _payment(entry, loaded)
    values = {
        "amount": amount(entry.after.get("amount", ""), payment.currency if payment else ""),
        "invoice": _invoice_part(payment),
    }
    if payment and payment.failure_message:
        # The provider's or bank's own words: shown as they were given.
        values["reason"] = payment.failure_message
        return _("A payment of %(amount)s%(invoice)s did not go through: %(reason)s") % values
    return _("A payment of %(amount)s%(invoice)s did not go through") % values


@customer_action("payment.requires_action", kind="payments")
def _needs_confirmation(entry, loaded) -> str:
    payment = _payment(entry, loaded)
    return _("Your bank asked to confirm a payment of %(amount)s%(invoice)s") % {
        "amount": amount(entry.after.get("amount", ""), payment.currency if payment else ""),
        "invoice": _invoice_part(payment),
    }


@customer_action("payment.short", kind="payments")
def _short(entry, loaded) -> str:
    payment = _payment(entry, loaded)
    currency = payment.currency if payment else ""
    return _("%(received)s received%(invoice)s; %(remaining)s is still due") % {
        "received": amount(entry.after.get("received", ""), currency),
        "invoice": _invoice_part(payment),
        "remaining": amount(entry.after.get("remaining", ""), currency),
    }


@customer_action("refund.succeeded", kind="payments")
def _refund(entry, loaded) -> str:
    payment = _payment(entry, loaded)
    values = {
        "amount": amount(entry.after.get("amount", ""), payment.currency if payment else ""),
        "invoice": _invoice_part(payment),
        "method": _method(payment),
    }
    if values["method"]:
        return _("Refund of %(amount)s%(invoice)s sent to %(method)s") % values
    return _("Refund of %(amount)s%(invoice)s sent") % values


def _card(entry: AuditEntry) -> str:
    return entry.object_repr[:1].upper() + entry.object_repr[1:]


@customer_action("payment_method.added", kind="account")
def _card_added(entry, loaded) -> str:
    return _("Card %(card)s saved%(by)s") % {"card": _card(entry), "by": actor_phrase(entry)}


@customer_action("payment_method.default", kind="account")
def _card_default(entry, loaded) -> str:
    return _("Card %(card)s made the default for automatic charges%(by)s") % {
        "card": _card(entry),
        "by": actor_phrase(entry),
    }


@customer_action("payment_method.removed", kind="account")
def _card_removed(entry, loaded) -> str:
    return _("Card %(card)s removed%(by)s") % {"card": _card(entry), "by": actor_phrase(entry)}
