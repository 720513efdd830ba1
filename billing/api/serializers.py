"""The invoice object of the "Pay invoice" API page (shared/seeds/002), in Stripe's shape.

Amounts are integers in minor units, currencies lowercase, times Unix seconds (UTC).
Our Refund status is not in Stripe's enum: such an invoice reports status "paid" with
`amount_refunded` equal to `amount_paid` (and our own `portal_status` says "refund").
"""

import datetime

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from billing.invoices.models import CreditNote, Invoice, InvoiceStatus
from contracts.models import ContractStatus, Customer, LeaseContract
from contracts.periods import add_months
from core.money import to_minor_units

STATUS_FOR_API = {
    InvoiceStatus.DRAFT: "draft",
    InvoiceStatus.OPEN: "open",
    InvoiceStatus.PAID: "paid",
    InvoiceStatus.REFUND: "paid",
    InvoiceStatus.VOID: "void",
    InvoiceStatus.UNCOLLECTIBLE: "uncollectible",
}
SUBSCRIPTION_STATUS = {
    ContractStatus.ACTIVE: "active",
    ContractStatus.PAST_DUE: "past_due",
    ContractStatus.CANCELLED: "canceled",
}
EXPANDABLE = ("customer", "subscription", "subscription.customer")


def report_reasons() -> list[str]:
    """The reasons a report may give: billing.collections' choices, read through the
    invoice's `reports` relation (the API does not import collections)."""
    model = Invoice._meta.get_field("reports").related_model
    return [value for value, _ in model._meta.get_field("reason").choices]


def invoice_report_object(report, invoice: Invoice) -> dict:
    """A report (dispute) of an invoice: billing.collections' InvoiceReport, read by its
    field names."""
    return {
        "id": f"ir_{report.pk}",
        "object": "invoice_report",
        "invoice": invoice_api_id(invoice),
        "reason": report.reason,
        "description": report.description,
        "expected_correction": report.expected_correction or None,
        "status": report.status,
        "staff_message": report.staff_message or None,
        "created": unix(report.created_at),
        "resolved": unix(report.resolved_at),
    }


def invoice_api_id(invoice: Invoice) -> str:
    return f"in_{invoice.pk}"


def parse_invoice_api_id(value: str) -> int | None:
    """The pk in "in_123"; None for anything else ("in_²" included: ASCII digits only)."""
    digits = value.removeprefix("in_")
    valid = value.startswith("in_") and digits.isascii() and digits.isdigit() and len(digits) < 18
    return int(digits) if valid else None


def unix(value: datetime.date | datetime.datetime | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime.combine(value, datetime.time(), tzinfo=datetime.UTC)
    return int(value.timestamp())


def customer_object(customer: Customer, *, delinquent: bool) -> dict:
    return {
        "id": f"cus_{customer.pk}",
        "object": "customer",
        "created": unix(customer.created_at),
        "address": {
            "city": customer.city or None,
            "country": customer.country or None,
            "line1": customer.address_line1 or None,
            "line2": customer.address_line2 or None,
            "postal_code": customer.postal_code or None,
            "state": customer.state or None,
        },
        "delinquent": delinquent,
        "email": customer.email or None,
        "name": customer.name,
        "phone": customer.phone or None,
    }


def subscription_object(contract: LeaseContract, *, customer: dict | str) -> dict:
    """Callers prefetch `blocks` and `prefetched_open_invoices` to keep queries flat."""
    blocks = len(contract.blocks.all())
    period_end = contract.next_billing_date
    period_start = add_months(period_end, -1, contract.billing_anchor_day)
    sub_id = f"sub_{contract.pk}"
    open_invoices = getattr(contract, "prefetched_open_invoices", None)
    if open_invoices is None:
        open_invoices = list(contract.invoices.filter(status=InvoiceStatus.OPEN))
    today = timezone.localdate()
    deadlines = [i.cancellation_date for i in open_invoices if i.is_overdue(today)]
    live = contract.status != ContractStatus.CANCELLED
    cancel_at = unix(min(deadlines)) if deadlines and live else None
    return {
        "id": sub_id,
        "object": "subscription",
        "created": unix(contract.created_at),
        "currency": contract.currency.lower(),
        "customer": customer,
        "status": SUBSCRIPTION_STATUS[contract.status],
        "start_date": unix(contract.started_on),
        "current_period_start": unix(period_start),
        "current_period_end": unix(period_end),
        "cancel_at": cancel_at,
        "ended_at": unix(contract.cancelled_at),
        "days_until_due": settings.PAYMENT_TERMS_DAYS,
        "metadata": {"contract": contract.reference},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{contract.pk}",
                    "object": "subscription_item",
                    "created": unix(contract.created_at),
                    "quantity": blocks,
                    "subscription": sub_id,
                    "price": {
                        "id": f"price_{contract.pk}",
                        "object": "price",
                        "created": unix(contract.created_at),
                        "active": contract.status != ContractStatus.CANCELLED,
                        "currency": contract.currency.lower(),
                        "unit_amount_decimal": str(to_minor_units(contract.price_per_block)),
                        "recurring": {
                            "interval": "month",
                            "interval_count": 1,
                            "usage_type": "licensed",
                        },
                    },
                }
            ],
        },
    }


def invoice_object(invoice: Invoice, *, expand: set[str], delinquent: bool) -> dict:
    """`delinquent` is the customer's, computed once per request by the caller."""
    customer = invoice.customer
    customer_value = (
        customer_object(customer, delinquent=delinquent)
        if "customer" in expand
        else f"cus_{customer.pk}"
    )
    subscription = None
    if invoice.contract_id:
        if "subscription" in expand or "subscription.customer" in expand:
            sub_customer = (
                customer_object(customer, delinquent=delinquent)
                if "subscription.customer" in expand
                else f"cus_{customer.pk}"
            )
            subscription = subscription_object(invoice.contract, customer=sub_customer)
        else:
            subscription = f"sub_{invoice.contract_id}"
    pdf = None
    if invoice.number:
        pdf = settings.SITE_URL + reverse("invoices:invoice-pdf", args=[invoice.number])
    xml = None
    if invoice.has_einvoice:
        xml = settings.SITE_URL + reverse("invoices:invoice-xml", args=[invoice.number])
    period_end = invoice.period_end + datetime.timedelta(days=1)  # exclusive, like Stripe
    return {
        "id": invoice_api_id(invoice),
        "object": "invoice",
        "number": invoice.number,
        "created": unix(invoice.created_at),
        "account_name": settings.SELLER["name"],
        # Stripe's amount_due: the total less pre-payment credit notes and applied balance.
        "amount_due": to_minor_units(invoice.amount_due),
        "amount_paid": to_minor_units(invoice.amount_paid),
        "amount_remaining": to_minor_units(invoice.amount_remaining),
        "amount_refunded": to_minor_units(invoice.amount_refunded),
        "pre_payment_credit_notes_amount": to_minor_units(invoice.pre_payment_credit_notes_amount),
        "post_payment_credit_notes_amount": to_minor_units(
            invoice.post_payment_credit_notes_amount
        ),
        # Stripe's sign: a negative balance is the customer's credit.
        "starting_balance": -to_minor_units(invoice.applied_balance),
        "subtotal": to_minor_units(invoice.subtotal),
        "tax": to_minor_units(invoice.tax),
        "total": to_minor_units(invoice.total),
        "currency": invoice.currency.lower(),
        "billing_reason": invoice.billing_reason,
        "customer": customer_value,
        "due_date": unix(invoice.due_date),
        "invoice_pdf": pdf,
        "invoice_xml": xml,
        "paid": invoice.status in (InvoiceStatus.PAID, InvoiceStatus.REFUND),
        "paid_out_of_band": invoice.paid_out_of_band,
        "period_start": unix(invoice.period_start),
        "period_end": unix(period_end),
        "status": STATUS_FOR_API[invoice.status],
        "portal_status": invoice.status,
        "subscription": subscription,
        # Annotated by the API's queryset (billing.invoices.models.payment_processing_flag).
        "payment_processing": bool(getattr(invoice, "payment_processing", False)),
    }


def credit_note_api_id(note: CreditNote) -> str:
    return f"cn_{note.pk}"


def parse_credit_note_api_id(value: str) -> int | None:
    digits = value.removeprefix("cn_")
    return (
        int(digits) if value.startswith("cn_") and digits.isdigit() and len(digits) < 18 else None
    )


def credit_note_object(note: CreditNote) -> dict:
    """Stripe's credit_note. Callers select `invoice` and prefetch lines, tax lines, refunds."""
    currency = note.currency.lower()
    tax_lines = list(note.tax_lines.all())
    return {
        "id": credit_note_api_id(note),
        "object": "credit_note",
        "number": note.number,
        "created": unix(note.created_at),
        "effective_at": unix(note.issue_date),
        "currency": currency,
        "customer": f"cus_{note.customer_id}",
        "invoice": invoice_api_id(note.invoice),
        "invoice_number": note.invoice.number,
        "amount": to_minor_units(note.total),
        "subtotal": to_minor_units(note.subtotal),
        "subtotal_excluding_tax": to_minor_units(note.subtotal),
        "total": to_minor_units(note.total),
        "total_excluding_tax": to_minor_units(note.subtotal),
        "pre_payment_amount": to_minor_units(note.pre_payment_amount),
        "post_payment_amount": to_minor_units(note.post_payment_amount),
        "out_of_band_amount": None,
        "credit_amount": to_minor_units(note.credit_amount),
        "refund_amount": to_minor_units(note.refund_amount),
        "memo": note.reason,
        "reason": None,
        "status": "issued",
        "type": note.kind,
        "voided_at": None,
        "pdf": settings.SITE_URL + reverse("invoices:credit-note-pdf", args=[note.number]),
        # Every credit note carries one: it is issued, and corrects an issued invoice.
        "credit_note_xml": settings.SITE_URL
        + reverse("invoices:credit-note-xml", args=[note.number]),
        "total_taxes": [
            {
                "amount": to_minor_units(t.amount),
                "tax_rate_details": {"display_name": t.name, "percentage": str(t.rate)},
                "taxable_amount": to_minor_units(t.taxable_amount),
                "tax_behavior": "exclusive",
                "taxability_reason": "reverse_charge" if t.note and not t.amount else None,
                "note": t.note or None,
            }
            for t in tax_lines
        ],
        "refunds": [
            {
                "amount_refunded": to_minor_units(r.amount),
                "refund": f"re_{r.pk}",
                "status": r.status,
            }
            for r in note.refunds.all()
        ],
        "lines": {
            "object": "list",
            "has_more": False,
            "url": f"/api/credit_notes/{credit_note_api_id(note)}",
            "data": [
                {
                    "id": f"cnli_{line.pk}",
                    "object": "credit_note_line_item",
                    "type": "invoice_line_item" if line.invoice_line_id else "custom_line_item",
                    "invoice_line_item": f"il_{line.invoice_line_id}"
                    if line.invoice_line_id
                    else None,
                    "description": line.description,
                    "amount": to_minor_units(line.amount),
                    "quantity": 1,
                    "unit_amount": None if line.invoice_line_id else to_minor_units(line.amount),
                    "tax_rate_percentage": str(line.tax_rate),
                }
                for line in note.lines.all()
            ],
        },
    }


def statement_object(statement) -> dict:
    """A billing.payments.statements.Statement. Amounts in minor units, signed: positive is
    owed by the customer."""
    return {
        "object": "statement",
        "customer": f"cus_{statement.customer.pk}",
        "currency": statement.currency.lower(),
        "period_start": statement.start.isoformat(),
        "period_end": statement.end.isoformat(),
        "opening_balance": to_minor_units(statement.opening),
        "closing_balance": to_minor_units(statement.closing),
        "credit_balance": to_minor_units(statement.credit_balance),
        "lines": [
            {
                "date": line.date.isoformat(),
                "type": line.kind,
                "reference": line.reference,
                "description": line.description,
                "amount": to_minor_units(line.amount),
                "balance": to_minor_units(line.balance),
            }
            for line in statement.lines
        ],
        "aging": {
            "as_of": statement.as_of.isoformat(),
            **{key: to_minor_units(amount) for key, _label, amount in statement.aging},
        },
    }


def payment_method_object(method) -> dict:
    """A saved PaymentMethod (billing.payments) with `contract_links__contract` prefetched;
    read by field names, as the API does not write payments' models."""
    contracts = [
        {"id": f"sub_{link.contract_id}", "reference": link.contract.reference}
        for link in method.contract_links.all()
    ]
    card = bank = None
    if method.is_bank:
        bank = {
            "bank_name": method.bank_name or None,
            "last4": method.last4,
            "mandate": {
                "id": method.mandate_id or None,
                "reference": method.mandate_reference or None,
                "accepted_at": unix(method.mandate_accepted_at),
                "text": method.mandate_text or None,
            },
        }
    else:
        card = {
            "brand": method.brand,
            "last4": method.last4,
            "exp_month": method.exp_month,
            "exp_year": method.exp_year,
        }
    return {
        "id": method.provider_id,
        "object": "payment_method",
        "type": method.type,
        "created": unix(method.created_at),
        "card": card,
        "bank": bank,
        "default": method.is_default,
        "contracts": contracts,
    }
