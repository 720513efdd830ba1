"""What an invoice document says about its parties and references, for the PDF and the XML.

An issued invoice speaks from its snapshot (the customer as they were when it was
finalised); a draft has none yet and shows the customer and contract as they are now.
"""

import re
from dataclasses import dataclass
from decimal import Decimal

from django.utils.translation import gettext as _

from billing.invoices.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine, InvoiceStatus
from core import l10n

# What the billing run writes on a lease line (services._draft_for_period), in English.
_LEASE_LINE = re.compile(
    r"^IPv4 lease (?P<prefix>\S+) \((?P<size>\d+) addresses\), .+?"
    r"(?: \(prorated (?P<days>\d+)/(?P<month_days>\d+) days\))?$"
)
# What credit_note_issue writes on a credit note's lines (credit_notes.py), in English.
_PART_OF = "Part of: "
_FREE_CREDIT = re.compile(
    r"^Credit on invoice (?P<number>\S+)(?: \((?P<tax>.+) (?P<rate>[\d.]+)%\))?$"
)


@dataclass(frozen=True)
class Buyer:
    name: str
    line1: str
    line2: str
    postal_code: str
    city: str
    state: str
    country: str
    tax_id: str
    email: str

    @property
    def address_lines(self) -> list[str]:
        """Street to state; the country is printed apart, in words."""
        city_line = " ".join(p for p in (self.postal_code, self.city) if p)
        return [p for p in (self.line1, self.line2, city_line, self.state) if p]


@dataclass(frozen=True)
class References:
    buyer: str
    order: str


def _issued(invoice: Invoice) -> bool:
    return invoice.status != InvoiceStatus.DRAFT or bool(invoice.bill_to_name)


def buyer(invoice: Invoice) -> Buyer:
    if not _issued(invoice):
        c = invoice.customer
        return Buyer(
            c.name, c.address_line1, c.address_line2, c.postal_code, c.city, c.state,
            c.country.upper(), c.tax_id, c.email,
        )  # fmt: skip
    if invoice.bill_to_line1 or invoice.bill_to_city:
        parts = (
            invoice.bill_to_line1,
            invoice.bill_to_line2,
            invoice.bill_to_postal_code,
            invoice.bill_to_city,
            invoice.bill_to_state,
        )
    else:
        # Issued before the address was kept in parts: the printed lines, first as the street.
        lines = [ln.strip() for ln in invoice.bill_to_address.splitlines() if ln.strip()]
        if lines and lines[-1].upper() == invoice.bill_to_country.upper():
            lines.pop()
        parts = (lines[0] if lines else "", " ".join(lines[1:]), "", "", "")
    return Buyer(
        invoice.bill_to_name, *parts, invoice.bill_to_country.upper(),
        invoice.bill_to_tax_id, invoice.bill_to_email,
    )  # fmt: skip


def references(invoice: Invoice) -> References:
    if _issued(invoice):
        return References(invoice.buyer_reference, invoice.purchase_order_reference)
    contract, customer = invoice.contract, invoice.customer
    return References(
        (contract and contract.buyer_reference) or customer.buyer_reference,
        (contract and contract.purchase_order_reference) or customer.purchase_order_reference,
    )


def language(invoice: Invoice) -> str:
    """The language the document is written in: the one it was issued in, else the customer's."""
    return l10n.portal_language(invoice.document_language or invoice.customer.document_language)


def line_description(line: InvoiceLine) -> str:
    """A lease line in the active language; any other line as it was written."""
    match = _LEASE_LINE.match(line.description)
    if not (match and line.period_start and line.period_end):
        return line.description
    text = _("IPv4 lease %(prefix)s (%(size)s addresses), %(period)s") % {
        "prefix": match["prefix"],
        "size": l10n.quantity(int(match["size"])),
        "period": l10n.period(line.period_start, line.period_end),
    }
    if match["days"]:
        text += " " + _("(prorated %(days)s/%(month_days)s days)") % {
            "days": match["days"],
            "month_days": match["month_days"],
        }
    return text


def credit_line_description(line: CreditNoteLine) -> str:
    """A credit note's line in the active language: the credited invoice line's own text
    (a part of it so marked), or the free amount's sentence; anything else as written."""
    original = line.invoice_line
    if original is not None:
        if line.description == original.description:
            return line_description(original)
        if line.description == _PART_OF + original.description:
            return _("Part of: %(line)s") % {"line": line_description(original)}
        return line.description
    match = _FREE_CREDIT.match(line.description)
    if not match:
        return line.description
    text = _("Credit on invoice %(number)s") % {"number": match["number"]}
    if match["tax"]:
        text += f" ({_(match['tax'])} {l10n.percent(Decimal(match['rate']))})"
    return text


def credit_note_settlement(note: CreditNote) -> str:
    """Where a credit note's money went, one sentence per way, in the active language."""
    currency = note.currency
    parts = []
    if note.pre_payment_amount:
        parts.append(
            _("%(amount)s taken off the amount due on invoice %(number)s.")
            % {
                "amount": l10n.money(note.pre_payment_amount, currency),
                "number": note.invoice.number,
            }
        )
    if note.refund_amount:
        parts.append(
            _("%(amount)s refunded to the original payment method.")
            % {"amount": l10n.money(note.refund_amount, currency)}
        )
    if note.credit_amount:
        parts.append(
            _("%(amount)s added to your credit balance.")
            % {"amount": l10n.money(note.credit_amount, currency)}
        )
    return " ".join(parts)
