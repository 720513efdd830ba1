"""Reads for billing pages. Every customer-facing read is scoped to one customer."""

import datetime
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db.models import (
    DecimalField,
    ExpressionWrapper,
    F,
    Prefetch,
    Q,
    QuerySet,
    Sum,
    Value,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.http import Http404

from billing.invoices.models import (
    DRAFT_REF_PREFIX,
    CreditNote,
    CreditNoteLine,
    CustomerBalance,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    overdue_q,
    payment_processing_flag,
    under_review_flag,
)
from config.release import code_fingerprint
from contracts.models import Customer, contract_reference
from core.money import ZERO

from .filters import SORT_FIELDS, InvoiceQuery, invoice_filter_queryset

logger = logging.getLogger(__name__)

_DRAFT_ID = re.compile(r"[0-9]{1,18}\Z")


def invoices_of(customer: Customer) -> QuerySet[Invoice]:
    return Invoice.objects.filter(customer=customer)


def invoice_for_customer_or_404(customer: Customer, ref: str, *, light: bool = False) -> Invoice:
    """The customer's invoice named by `ref` (number or draft-<id>).

    Another customer's invoice answers exactly like one that does not exist. With
    light=True only what names and versions the invoice is loaded (enough to serve its
    cached PDF); otherwise its customer and contract come along.
    """
    qs = invoices_of(customer).order_by()  # a ref names one invoice: nothing to sort
    if light:
        qs = qs.only("id", "number", "customer_id", "status", "state_version")
    else:
        qs = qs.select_related("customer", "contract")
    if ref.startswith(DRAFT_REF_PREFIX):
        pk = ref.removeprefix(DRAFT_REF_PREFIX)
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        found = qs.filter(pk=int(pk), number__isnull=True)[:1] if _DRAFT_ID.match(pk) else []
    else:
        found = qs.filter(number=ref)[:1]
    for invoice in found:
        return invoice
    raise Http404("No such invoice.")


# --- The invoice list ---------------------------------------------------------------


def invoice_filter(
    customer: Customer, query: InvoiceQuery, *, today: datetime.date
) -> QuerySet[Invoice]:
    """The customer's invoices matching the list's filter (status, dates, search)."""
    return invoice_filter_queryset(invoices_of(customer), query, customer=customer, today=today)


def invoice_ordered(qs: QuerySet[Invoice], *, sort_key: str, descending: bool) -> QuerySet[Invoice]:
    """Drafts have no number or issue date yet: they sort as the newest."""
    column = F(SORT_FIELDS[sort_key])
    if descending:
        return qs.order_by(column.desc(nulls_first=True), F("id").desc())
    return qs.order_by(column.asc(nulls_last=True), F("id").asc())


def invoice_page(
    qs: QuerySet[Invoice], *, sort_key: str, descending: bool, offset: int, limit: int, count: int
) -> list[Invoice]:
    """One page of the sorted list. Past the middle, it reads from the other end.

    OFFSET makes PostgreSQL walk and throw away every row before the page; the last page
    of 100,000 invoices is the first page of the reverse order.
    """
    if offset + limit / 2 <= count / 2:
        return list(
            invoice_ordered(qs, sort_key=sort_key, descending=descending)[offset : offset + limit]
        )
    end = max(count - offset - limit, 0)
    rows = list(
        invoice_ordered(qs, sort_key=sort_key, descending=not descending)[end : count - offset]
    )
    rows.reverse()
    return rows


def invoice_list_rows(qs: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """Only the columns a list row shows, whether each is under review, whether a bank
    debit for it is processing, and the numbers of its credit notes (one query)."""
    return (
        qs.annotate(under_review=under_review_flag(), payment_processing=payment_processing_flag())
        .only(
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
            "applied_balance",
            "pre_payment_credit_notes_amount",
            "post_payment_credit_notes_amount",
        )
        .prefetch_related(
            Prefetch(
                "credit_notes",
                queryset=CreditNote.objects.only("id", "number", "invoice_id", "total").order_by(
                    "number"
                ),
            )
        )
    )


# --- Per-customer cache of the invoice list --------------------------------------------
#
# Counting or summing a customer's 100,000 invoices costs tens of milliseconds on every
# page view. Counts, summary cards and rendered list HTML are cached per customer, each
# entry stored with the customer's invoice-list version it was computed under.
# billing.invoices.services replaces the version after every commit that creates an invoice or
# changes its status or amounts, so a reader never gets a total older than the last
# committed change: an entry computed before the change carries the old version and is
# not served. One round trip reads an entry together with the current version. The TTL
# only bounds what a lost version bump (cache down at that moment) could leave behind.
LIST_CACHE_SECONDS = 300


def invoice_list_version_key(customer_id: int) -> str:
    """The cache key of the customer's invoice-list version (a random string)."""
    return f"invoices:invoice-list:{customer_id}:version"


def invoice_list_changed(customer_id: int) -> None:
    """Forget the customer's cached counts and totals (call after commit)."""
    try:
        cache.set(invoice_list_version_key(customer_id), uuid.uuid4().hex, None)
    except Exception:
        logger.exception("could not bump the invoice list version of customer %s", customer_id)


def _list_entry_key(customer_id: int, key: str) -> str:
    # The code fingerprint: HTML rendered by another release is never served.
    return f"invoices:invoice-list:{customer_id}:{code_fingerprint()}:{key}"


def list_cache_lookup(customer_id: int, key: str) -> tuple[Any, str]:
    """(the entry if it is of the current version, else None; the current version).

    Store a freshly computed value under the version returned here, read *before*
    computing: if an invoice changes meanwhile, the value is never served as newer.
    Cache errors propagate; callers fall back to computing.
    """
    version_key = invoice_list_version_key(customer_id)
    found = cache.get_many([version_key, _list_entry_key(customer_id, key)])
    version = found.get(version_key)
    if version is None:
        cache.add(version_key, uuid.uuid4().hex, None)
        return None, cache.get(version_key)
    stored = found.get(_list_entry_key(customer_id, key))
    if stored is not None and stored[0] == version:
        return stored[1], version
    return None, version


def list_cache_store(customer_id: int, key: str, version: str, value: Any) -> None:
    cache.set(_list_entry_key(customer_id, key), (version, value), LIST_CACHE_SECONDS)


def cached_for_customer(customer_id: int, key: str, compute: Callable[[], Any]) -> Any:
    """compute() cached for the customer (see above); the cache is an optimisation only:
    when it is unavailable, compute() answers."""
    try:
        value, version = list_cache_lookup(customer_id, key)
    except Exception:
        logger.exception("invoice list cache unavailable")
        return compute()
    if value is None:
        value = compute()
        try:
            list_cache_store(customer_id, key, version, value)
        except Exception:
            logger.exception("invoice list cache unavailable")
    return value


def invoice_count(
    customer: Customer,
    query: InvoiceQuery,
    *,
    today: datetime.date,
    filtered: QuerySet[Invoice],
) -> int:
    """How many invoices match `query` (`filtered`: invoice_filter's queryset for it)."""
    key = f"count:{today}:{query.filter_key()}"
    return cached_for_customer(customer.pk, key, filtered.count)


@dataclass
class CurrencyTotals:
    currency: str
    paid: Decimal
    pending: Decimal
    overdue: Decimal
    written_off: Decimal = ZERO


def invoice_summary(
    customer: Customer,
    *,
    today: datetime.date,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> list[CurrencyTotals]:
    """Total Paid / Pending / Overdue per currency for invoices issued in the range (one query).

    Each card is what the list shows under one status filter, so the customer can add it up:
    Paid sums the Paid filter, Pending what is still owed on the Open filter's invoices,
    Overdue the part of it past the due date (the Overdue filter). What staff wrote off
    (Uncollectible) is still owed but is not pending: it has a card of its own, written_off.
    """
    return cached_for_customer(
        customer.pk,
        f"summary:{today}:{date_from}:{date_to}",
        lambda: _invoice_summary(customer, today=today, date_from=date_from, date_to=date_to),
    )


def _invoice_summary(
    customer: Customer,
    *,
    today: datetime.date,
    date_from: datetime.date | None,
    date_to: datetime.date | None,
) -> list[CurrencyTotals]:
    qs = invoices_of(customer)
    if date_from:
        qs = qs.filter(issue_date__gte=date_from)
    if date_to:
        qs = qs.filter(issue_date__lte=date_to)
    owed = ExpressionWrapper(
        F("total") - F("pre_payment_credit_notes_amount") - F("applied_balance") - F("amount_paid"),
        output_field=DecimalField(),
    )
    zero = Value(ZERO, output_field=DecimalField())
    rows = (
        qs.exclude(status__in=[InvoiceStatus.DRAFT, InvoiceStatus.VOID])
        .order_by()
        .values("currency")
        .annotate(
            paid=Coalesce(Sum("amount_paid", filter=Q(status=InvoiceStatus.PAID)), zero),
            pending=Coalesce(Sum(owed, filter=Q(status=InvoiceStatus.OPEN)), zero),
            overdue=Coalesce(Sum(owed, filter=overdue_q(today)), zero),
            written_off=Coalesce(Sum(owed, filter=Q(status=InvoiceStatus.UNCOLLECTIBLE)), zero),
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
        # By relation name: payments depend on invoices, never the reverse. The page
        # orders them (oldest first) in Python.
        "payments__refunds",
        Prefetch("credit_notes", queryset=CreditNote.objects.order_by("number")),
        # billing.collections' reports (disputes), oldest first, by relation name too.
        "reports",
    )
    invoice.under_review = any(r.resolved_at is None for r in invoice.reports.all())
    invoice.payment_processing = any(p.status == "processing" for p in invoice.payments.all())
    if invoice.contract_id:
        prefetch_related_objects([invoice.contract], "blocks")
    return invoice


def invoices_by_numbers(customer: Customer, numbers: list[str]) -> QuerySet[Invoice]:
    return invoices_of(customer).filter(number__in=numbers)


# --- Credit notes and the credit balance --------------------------------------------


def credit_note_for_customer_or_404(
    customer: Customer, number: str, *, light: bool = False
) -> CreditNote:
    """The customer's credit note `number`; another customer's answers like a missing one.

    With light=False its lines, tax lines, invoice and refunds (by relation name) come along.
    """
    qs = CreditNote.objects.filter(customer=customer, number=number).order_by()
    if light:
        qs = qs.only("id", "number", "customer_id", "invoice_id")
    else:
        qs = qs.select_related("invoice", "customer").prefetch_related(
            Prefetch("lines", queryset=CreditNoteLine.objects.select_related("invoice_line")),
            "tax_lines",
            "refunds",
        )
    for note in qs[:1]:
        return note
    raise Http404("No such credit note.")


def credit_balances(customer: Customer) -> list[CustomerBalance]:
    """The customer's credit per currency, where there is any."""
    return list(
        CustomerBalance.objects.filter(customer=customer, amount__gt=0).order_by("currency")
    )


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
    # Credit notes are rows of their own (status "credit_note", amounts negative) naming
    # the invoice they credit here.
    "credited_invoice",
]


def invoice_export_rows(
    qs: QuerySet[Invoice], *, current_vat: str, chunk_size: int = 2000
) -> Iterator[list]:
    """CSV rows for every invoice of `qs`, read in chunks through a server-side cursor.

    `current_vat` is the customer's VAT id today, shown for drafts only.
    """
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
    )
    for row in columns.iterator(chunk_size=chunk_size):
        (number, issued, due, start, end, contract_id, net, tax, total, cur, status, paid_at,
         billed_vat) = row  # fmt: skip
        yield [
            number or "",
            issued or "",
            due or "",
            start,
            end,
            contract_reference(contract_id) if contract_id else "",
            net,
            tax,
            total,
            cur,
            status,
            paid_at.date().isoformat() if paid_at else "",
            # As billed: issued invoices keep the VAT id they were issued with; a draft has
            # none yet and shows the customer's current one.
            _csv_safe(billed_vat if number else current_vat),
            "",
        ]


def credit_note_export_rows(
    invoices: QuerySet[Invoice], *, chunk_size: int = 2000
) -> Iterator[list]:
    """CSV rows (same columns) for the credit notes of `invoices`: amounts negative, status
    "credit_note", and the invoice they credit in the last column."""
    columns = (
        CreditNote.objects.filter(invoice__in=invoices.order_by().values("pk"))
        .order_by("number")
        .values_list(
            "number",
            "issue_date",
            "invoice__number",
            "invoice__period_start",
            "invoice__period_end",
            "invoice__contract_id",
            "subtotal",
            "tax",
            "total",
            "currency",
            "invoice__bill_to_tax_id",
        )
    )
    for row in columns.iterator(chunk_size=chunk_size):
        (number, issued, invoice_number, start, end, contract_id, net, tax, total, cur,
         vat) = row  # fmt: skip
        yield [
            number,
            issued,
            "",
            start,
            end,
            contract_reference(contract_id) if contract_id else "",
            -net,
            -tax,
            -total,
            cur,
            "credit_note",
            "",
            _csv_safe(vat),
            invoice_number,
        ]


def _csv_safe(text: str) -> str:
    """Customer-typed text must not become a formula when the CSV is opened in a spreadsheet."""
    return f"'{text}" if text and text[0] in "=+-@\t\r" else text
