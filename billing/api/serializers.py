"""The invoice object of the "Pay invoice" API page (shared/seeds/002), in Stripe's shape.

Amounts are integers in minor units, currencies lowercase, times Unix seconds (UTC).
Our Refund status is not in Stripe's enum: such an invoice reports status "paid" with
`amount_refunded` equal to `amount_paid` (and our own `portal_status` says "refund").
"""

import datetime

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from billing.invoices.models import Invoice, InvoiceStatus
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
        "amount_due": to_minor_units(invoice.total),
        "amount_paid": to_minor_units(invoice.amount_paid),
        "amount_remaining": to_minor_units(invoice.amount_remaining),
        "amount_refunded": to_minor_units(invoice.amount_refunded),
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
    }
