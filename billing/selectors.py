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

from config.release import code_fingerprint
from contracts.models import Customer, contract_reference

from .filters import OVERDUE, SORT_FIELDS, InvoiceQuery
from .models import (
    DRAFT_REF_PREFIX,
    PAYABLE_STATUSES,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    Refund,
    overdue_q,
)
from .money import ZERO

logger = logging.getLogger(__name__)


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
        found = qs.filter(pk=int(pk), number__isnull=True)[:1] if pk.isdigit() else []
    else:
        found = qs.filter(number=ref)[:1]
    for invoice in found:
        return invoice
    raise Http404("No such invoice.")


# --- The invoice list ---------------------------------------------------------------


# The start of an invoice number ("INV-2026-0001", "inv-"): series letters and a dash.
_NUMBER_START = re.compile(r"^[A-Za-z]+-[0-9-]*$")


# A search matching more invoices than this is answered by a subquery instead of a list.
_SEARCH_ID_LIMIT = 2000


def _search(qs: QuerySet[Invoice], customer: Customer, text: str) -> QuerySet[Invoice]:
    """Number, line description or block prefix, one row per invoice.

    Three separate indexed lookups joined by UNION on the invoice id, never an OR across
    joins (which PostgreSQL can only answer by scanning every invoice of the customer).
    A query that starts like an invoice number matches numbers by prefix through the
    unique number's btree: its trigrams ("INV", "-20", "000") are in every number, so the
    trigram index would read all of them. Numbers are issued in upper case.

    The ids are read first (one query) when there are few of them: the planner cannot
    estimate a UNION of LIKEs and would otherwise hash-join all the customer's invoices.
    """
    if _NUMBER_START.match(text):
        by_number = Invoice.objects.filter(number__startswith=text.upper())
    else:
        by_number = Invoice.objects.filter(number__icontains=text)
    lines = InvoiceLine.objects.order_by().filter(invoice__customer=customer)
    ids = (
        by_number.filter(customer=customer)
        .order_by()
        .values_list("pk", flat=True)
        .union(
            lines.filter(description__icontains=text).values_list("invoice_id", flat=True),
            lines.filter(block__prefix__startswith=text).values_list("invoice_id", flat=True),
        )
    )
    found = list(ids[: _SEARCH_ID_LIMIT + 1])
    if len(found) <= _SEARCH_ID_LIMIT:
        return qs.filter(pk__in=found)
    return qs.filter(pk__in=ids)


def invoice_filter(
    customer: Customer, query: InvoiceQuery, *, today: datetime.date
) -> QuerySet[Invoice]:
    """The customer's invoices matching the list's filter (status, dates, search)."""
    qs = invoices_of(customer)
    if query.status == OVERDUE:
        qs = qs.filter(overdue_q(today))
    elif query.status:
        qs = qs.filter(status=query.status)
    if query.date_from:
        qs = qs.filter(issue_date__gte=query.date_from)
    if query.date_to:
        qs = qs.filter(issue_date__lte=query.date_to)
    if query.q:
        qs = _search(qs, customer, query.q)
    return qs


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


# --- Per-customer cache of the invoice list --------------------------------------------
#
# Counting or summing a customer's 100,000 invoices costs tens of milliseconds on every
# page view. Counts, summary cards and rendered list HTML are cached per customer, each
# entry stored with the customer's invoice-list version it was computed under.
# billing.services replaces the version after every commit that creates an invoice or
# changes its status or amounts, so a reader never gets a total older than the last
# committed change: an entry computed before the change carries the old version and is
# not served. One round trip reads an entry together with the current version. The TTL
# only bounds what a lost version bump (cache down at that moment) could leave behind.
LIST_CACHE_SECONDS = 300


def invoice_list_version_key(customer_id: int) -> str:
    """The cache key of the customer's invoice-list version (a random string)."""
    return f"billing:invoice-list:{customer_id}:version"


def invoice_list_changed(customer_id: int) -> None:
    """Forget the customer's cached counts and totals (call after commit)."""
    try:
        cache.set(invoice_list_version_key(customer_id), uuid.uuid4().hex, None)
    except Exception:
        logger.exception("could not bump the invoice list version of customer %s", customer_id)


def _list_entry_key(customer_id: int, key: str) -> str:
    # The code fingerprint: HTML rendered by another release is never served.
    return f"billing:invoice-list:{customer_id}:{code_fingerprint()}:{key}"


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
    owed = ExpressionWrapper(F("total") - F("amount_paid"), output_field=DecimalField())
    zero = Value(ZERO, output_field=DecimalField())
    rows = (
        qs.exclude(status__in=[InvoiceStatus.DRAFT, InvoiceStatus.VOID])
        .order_by()
        .values("currency")
        .annotate(
            paid=Coalesce(Sum("amount_paid", filter=Q(status=InvoiceStatus.PAID)), zero),
            pending=Coalesce(Sum(owed, filter=Q(status__in=PAYABLE_STATUSES)), zero),
            overdue=Coalesce(Sum(owed, filter=overdue_q(today)), zero),
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
        ]


def _csv_safe(text: str) -> str:
    """Customer-typed text must not become a formula when the CSV is opened in a spreadsheet."""
    return f"'{text}" if text and text[0] in "=+-@\t\r" else text
