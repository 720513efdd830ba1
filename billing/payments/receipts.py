"""Receipts: what a successful payment paid on an invoice, as a page and as a PDF.

A receipt is read from the ledger, never stored: for each payment that put money on the
invoice it says how much, when, how, and what the invoice still owed right after it —
the ledger as it stood then (a later refund does not rewrite an old receipt; it shows
beside it). Payments that credited nothing (held for staff, or paid twice and handed
back) have no receipt.
"""

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.http import Http404
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from billing.invoices.documents.content import language as document_language
from billing.invoices.documents.pdf import html_to_pdf
from billing.invoices.models import Invoice
from core.money import ZERO

from .models import Payment, PaymentKind, PaymentStatus

# A payment in these statuses has put its money on the invoice (a refunded one did, once).
_CREDITED = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)


@dataclass(frozen=True)
class Receipt:
    invoice: Invoice
    payment: Payment
    number: str
    amount: Decimal  # what this payment paid on the invoice
    received: Decimal  # what the provider took (more, when excess was handed back)
    paid_at: datetime
    method: str
    remaining_after: Decimal

    @property
    def currency(self) -> str:
        return self.invoice.currency

    @property
    def excess(self) -> Decimal:
        return (
            self.received - self.amount
            if self.payment.currency_received in ("", self.currency)
            else ZERO
        )

    @property
    def filename(self) -> str:
        return f"receipt-{self.number}.pdf"


def payment_method_label(payment: Payment) -> str:
    """How the payment was made, in the active language (read when shown, never stored)."""
    if payment.method_last4:
        brand = payment.method_brand.capitalize() if payment.method_brand else _("Card")
        return f"{brand} •••• {payment.method_last4}"
    if payment.kind == PaymentKind.OUT_OF_BAND:
        return _("Bank transfer (recorded by our team)")
    return str(payment.get_kind_display())


def invoice_receipts(invoice: Invoice, payments: list[Payment] | None = None) -> list[Receipt]:
    """The invoice's receipts, oldest first. `payments`: the invoice's payments if the
    caller has them already (no query then); else they are read in one query."""
    if payments is None:
        payments = list(invoice.payments.all())
    credited = sorted(
        (
            p
            for p in payments
            if p.status in _CREDITED and not p.is_duplicate and not p.held_reason and p.succeeded_at
        ),
        key=lambda p: (p.succeeded_at, p.pk),
    )
    receipts = []
    owed = invoice.total
    for position, payment in enumerate(credited, start=1):
        # The ledger's own rule (payment_record_success): credit up to what is still owed.
        amount = min(payment.amount_collected, owed)
        if amount <= ZERO:
            continue
        owed -= amount
        receipts.append(
            Receipt(
                invoice=invoice,
                payment=payment,
                number=f"{invoice.number}-{position}",
                amount=amount,
                received=payment.amount_collected,
                paid_at=payment.succeeded_at,
                method=payment_method_label(payment),
                remaining_after=owed,
            )
        )
    return receipts


def receipt_or_404(invoice: Invoice, payment_id: int) -> Receipt:
    for receipt in invoice_receipts(invoice):
        if receipt.payment.pk == payment_id:
            return receipt
    raise Http404("No receipt for this payment.")


def receipt_pdf_bytes(receipt: Receipt) -> bytes:
    """The receipt PDF in the invoice's document language, like the invoice's own PDF."""
    language = document_language(receipt.invoice)
    with translation.override(language):
        # The method label was read in the page's language; a document reads its own.
        receipt = dataclasses.replace(receipt, method=payment_method_label(receipt.payment))
        html = render_to_string(
            "billing/pdf/receipt.html",
            {"receipt": receipt, "seller": settings.SELLER, "language": language},
        )
    return html_to_pdf(html)
