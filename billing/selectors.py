"""Reads for billing pages. Every customer-facing read is scoped to one customer."""

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import (
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Sum,
    Value,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.http import Http404

from contracts.models import Customer

from .filters import OVERDUE, SORT_FIELDS
from .models import (
    DRAFT_REF_PREFIX,
    PAYABLE_STATUSES,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    Refund,
)
from .money import ZERO


def invoices_of(customer: Customer) -> QuerySet[Invoice]:
    return Invoice.objects.filter(customer=customer)


def invoice_for_customer_or_404(customer: Customer, ref: str) -> Invoice:
    """The customer's invoice named by `ref` (number or draft-<id>).

    Another customer's invoice answers exactly like one that does not exist.
    """
    qs = invoices_of(customer).select_related("customer", "contract")
    if ref.startswith(DRAFT_REF_PREFIX):
        pk = ref.removeprefix(DRAFT_REF_PREFIX)
        invoice = qs.filter(pk=int(pk), number__isnull=True).first() if pk.isdigit() else None
    else:
        invoice = qs.filter(number=ref).first()
    if invoice is None:
        raise Http404("No such invoice.")
    return invoice


# --- The invoice list ---------------------------------------------------------------


def _search(qs: QuerySet[Invoice], text: str) -> QuerySet[Invoice]:
    """Number, line description or block prefix. EXISTS keeps one row per invoice."""
    lines = InvoiceLine.objects.filter(invoice_id=OuterRef("pk")).filter(
        Q(description__icontains=text) | Q(block__prefix__startswith=text)
    )
    return qs.filter(Q(number__icontains=text) | Exists(lines))


def invoice_filter(
    customer: Customer,
    *,
    today: datetime.date,
    status: str = "",
    q: str = "",
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> QuerySet[Invoice]:
    qs = invoices_of(customer)
    if status == OVERDUE:
        qs = qs.filter(status=InvoiceStatus.OPEN, due_date__lt=today)
    elif status:
        qs = qs.filter(status=status)
    if date_from:
        qs = qs.filter(issue_date__gte=date_from)
    if date_to:
        qs = qs.filter(issue_date__lte=date_to)
    if q:
        qs = _search(qs, q)
    return qs


def invoice_ordered(qs: QuerySet[Invoice], *, sort_key: str, descending: bool) -> QuerySet[Invoice]:
    """Drafts have no number or issue date yet: they sort as the newest."""
    column = F(SORT_FIELDS[sort_key])
    if descending:
        return qs.order_by(column.desc(nulls_first=True), F("id").desc())
    return qs.order_by(column.asc(nulls_last=True), F("id").asc())


def invoice_list_rows(qs: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """Only the columns a list row shows."""
    return qs.only(
        "id",
        "number",
        "customer_id",
        "contract_id",
        "status",
        "currency",
        "period_start",
        "period_end",
        "issue_date",
        "due_date",
        "total",
        "amount_paid",
    )


@dataclass
class CurrencyTotals:
    currency: str
    paid: Decimal
    pending: Decimal
    overdue: Decimal


def invoice_summary(
    customer: Customer,
    *,
    today: datetime.date,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> list[CurrencyTotals]:
    """Total Paid / Pending / Overdue per currency for invoices issued in the range (one query).

    Pending is what is still owed on Open and Uncollectible invoices; Overdue is the part
    of it on Open invoices past their due date.
    """
    qs = invoice_filter(customer, today=today, date_from=date_from, date_to=date_to)
    owed = ExpressionWrapper(F("total") - F("amount_paid"), output_field=DecimalField())
    zero = Value(ZERO, output_field=DecimalField())
    rows = (
        qs.exclude(status__in=[InvoiceStatus.DRAFT, InvoiceStatus.VOID])
        .order_by()
        .values("currency")
        .annotate(
            paid=Coalesce(Sum("amount_paid", filter=Q(status=InvoiceStatus.PAID)), zero),
            pending=Coalesce(Sum(owed, filter=Q(status__in=PAYABLE_STATUSES)), zero),
            overdue=Coalesce(
                Sum(owed, filter=Q(status=InvoiceStatus.OPEN, due_date__lt=today)), zero
            ),
        )
        .order_by("currency")
    )
    return [CurrencyTotals(**row) for row in rows]


# --- Invoice detail -----------------------------------------------------------------


def invoice_detail(customer: Customer, ref: str) -> Invoice:
    """The invoice with everything its page shows, in a fixed number of queries."""
    invoice = invoice_for_customer_or_404(customer, ref)
    prefetch_related_objects(
        [invoice],
        Prefetch("lines", queryset=InvoiceLine.objects.select_related("block")),
        "tax_lines",
        Prefetch(
            "payments",
            queryset=Payment.objects.order_by("created_at", "id").prefetch_related(
                Prefetch("refunds", queryset=Refund.objects.order_by("created_at", "id"))
            ),
        ),
    )
    if invoice.contract_id:
        prefetch_related_objects([invoice.contract], "blocks")
    return invoice


def invoices_by_numbers(customer: Customer, numbers: list[str]) -> QuerySet[Invoice]:
    return invoices_of(customer).filter(number__in=numbers)


# --- CSV export ---------------------------------------------------------------------

CSV_HEADER = [
    "number",
    "issue_date",
    "due_date",
    "period_start",
    "period_end",
    "contract",
    "net",
    "tax",
    "total",
    "currency",
    "status",
    "paid_date",
    "customer_vat_id",
]


def invoice_export_rows(qs: QuerySet[Invoice], *, chunk_size: int = 2000) -> Iterator[list]:
    """CSV rows for every invoice of `qs`, read in chunks through a server-side cursor."""
    columns = qs.values_list(
        "number",
        "issue_date",
        "due_date",
        "period_start",
        "period_end",
        "contract_id",
        "subtotal",
        "tax",
        "total",
        "currency",
        "status",
        "paid_at",
        "bill_to_tax_id",
        "customer__tax_id",
    )
    for row in columns.iterator(chunk_size=chunk_size):
        (number, issued, due, start, end, contract_id, net, tax, total, cur, status, paid_at,
         billed_vat, customer_vat) = row  # fmt: skip
        yield [
            number or "",
            issued or "",
            due or "",
            start,
            end,
            f"C-{contract_id:06d}" if contract_id else "",
            net,
            tax,
            total,
            cur,
            status,
            paid_at.date().isoformat() if paid_at else "",
            billed_vat or customer_vat,
        ]
