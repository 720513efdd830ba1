"""Reads for billing pages. Every customer-facing read is scoped to one customer."""

import datetime
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import (
    BooleanField,
    CharField,
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
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.http import Http404

from billing.invoices.models import (
    DRAFT_REF_PREFIX,
    NO_DATE,
    CreditNote,
    CreditNoteLine,
    CustomerBalance,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    overdue_q,
)
from contracts.models import Customer, contract_reference
from core.money import ZERO

from . import list_cache
from .filters import (
    OVERDUE,
    SEARCH_ID_LIMIT,
    SORT_FIELDS,
    UNDER_REVIEW,
    InvoiceQuery,
    invoice_filter_queryset,
)
from .triggers import INVOICE_COLUMNS

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


# The PDF download's lookup, written out: the ORM spent as long building this one statement
# as the database took to answer it, on a request that otherwise only reads a file.
_PDF_LOOKUP = (
    "SELECT id, status, state_version FROM invoices_invoice"
    " WHERE customer_id = %s AND number = %s LIMIT 1"
)


def invoice_for_pdf_or_404(customer: Customer, ref: str) -> Invoice:
    """invoice_for_customer_or_404(light=True) for the PDF download: the customer's invoice
    `ref` with only id, number, customer, status and version loaded. Those three values are
    kept in the cache under the customer's invoice version (list_cache.by_version, read with
    the login's membership query), so a download of an invoice that has not changed makes no
    query of its own; else one plain statement on the unique number index. Drafts
    (draft-<id>) go the general way."""
    if ref.startswith(DRAFT_REF_PREFIX):
        return invoice_for_customer_or_404(customer, ref, light=True)

    def read() -> tuple | None:
        with connection.cursor() as cursor:
            cursor.execute(_PDF_LOOKUP, [customer.pk, ref])
            row = cursor.fetchone()
        return None if row is None else tuple(row)

    row = list_cache.by_version(customer, f"pdf:{ref}", read)
    if row is None:
        raise Http404("No such invoice.")
    known = {"id": row[0], "status": row[1], "state_version": row[2]}
    known.update(number=ref, customer_id=customer.pk)
    # from_db takes the values in the model's field order (what .only() would pass).
    names = [f.attname for f in Invoice._meta.concrete_fields if f.attname in known]
    return Invoice.from_db("default", names, [known[name] for name in names])


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


# The invoice at a place in the list sorted by issue date, found from the rollup's counts
# per issue month (the month holding the place, and the place within it) and read within
# that month: one statement. Drafts (NO_DATE) are not looked for here (the caller walks).
_MONTH_PLACE_SQL = """
WITH months AS (
    SELECT issue_month, SUM(invoice_count) AS n FROM invoices_invoicerollup
    WHERE customer_id = %(customer)s{status} GROUP BY issue_month HAVING SUM(invoice_count) > 0
), placed AS (
    SELECT issue_month, n, SUM(n) OVER (
        ORDER BY issue_month = %(no_date)s {order}, issue_month {order}) - n AS before
    FROM months
), target AS (
    SELECT issue_month, %(position)s - before AS k FROM placed
    WHERE before <= %(position)s AND %(position)s < before + n AND issue_month <> %(no_date)s
)
SELECT i.issue_date, i.id FROM target CROSS JOIN LATERAL (
    SELECT issue_date, id FROM invoices_invoice
    WHERE customer_id = %(customer)s{status} AND issue_date >= target.issue_month
        AND issue_date < (target.issue_month + INTERVAL '1 month')::date
    ORDER BY issue_date {order}, id {order} OFFSET target.k LIMIT 1
) AS i
"""


def _month_place(
    customer: Customer, status: str, *, descending: bool, position: int
) -> tuple | None:
    """(issue date, id) at `position` of the customer's invoices (of `status`, "" for all)
    sorted by issue date, from the rollup's month counts; None when the place is among the
    drafts or past the end."""
    sql = _MONTH_PLACE_SQL.format(
        status=" AND status = %(status)s" if status else "",
        order="DESC" if descending else "ASC",
    )
    params = {"customer": customer.pk, "status": status, "no_date": NO_DATE, "position": position}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchone()
    return tuple(found) if found else None


def invoice_place_at(
    customer: Customer, query: InvoiceQuery, qs: QuerySet[Invoice], *, position: int, count: int
) -> tuple | None:
    """(value, id) of the invoice at `position` (0-based) in the list of `query` (`qs`:
    invoice_filter's queryset for it), for an old ?page=N link; the page is then a keyset
    page after it.

    Sorted by issue date under a filter the rollup counts per month (a status or none; no
    search, no dates), the month is found from the rollup and the place read within it, in
    one statement (PostgreSQL). Otherwise, and for a place among the drafts, the place is
    read through the index only (the sort column and id, no row data), from whichever end
    is nearer."""
    sort_key, descending = query.sort_key, query.descending
    column = SORT_FIELDS[sort_key]
    by_month = (
        sort_key == "date"
        and connection.vendor == "postgresql"  # the demo's SQLite walks its few invoices
        and not (query.q or query.date_from or query.date_to)
        and query.status not in (OVERDUE, UNDER_REVIEW)
    )
    if by_month:
        found = _month_place(customer, query.status, descending=descending, position=position)
        if found is not None:
            return found
    if position >= count / 2 and position < count:
        descending, position = not descending, count - 1 - position
    found = invoice_ordered(qs, sort_key=sort_key, descending=descending).values_list(column, "id")[
        position : position + 1
    ]
    return tuple(found[0]) if found else None


# --- Keyset pagination ------------------------------------------------------------------
#
# A page is "the next `limit` invoices after this one" in the sort order (column, then id),
# read from the index where the cursor's row is: the cost does not grow with how far into
# the list the page is, as OFFSET's did. Drafts have no number, issue or due date: they
# sort first when descending and last when ascending (as PostgreSQL's btree returns them).

# Greater than any id: a jump to a date starts before every invoice of that date.
_MAX_ID = 2**63 - 1


@dataclass
class KeysetPage:
    rows: list  # ListRow (invoice_list_row_values) or Invoice
    has_previous: bool
    has_next: bool


def _walk(qs: QuerySet[Invoice], column: str, descending: bool, start, limit: int) -> list[Invoice]:
    """Up to `limit` rows in the order (column, id), both `descending` or both ascending,
    NULLs first when descending and last when ascending, that come strictly after the
    place `start` (value, id), or from the beginning when `start` is None.

    The condition on a non-NULL start is written as a range on the column (an index
    condition) plus a filter on the tie, so PostgreSQL seeks to the place in the index
    instead of reading from the start of the customer's range.
    """
    col, pk = F(column), F("id")
    order = [col.desc(nulls_first=True), pk.desc()] if descending else [
        col.asc(nulls_last=True), pk.asc()]  # fmt: skip
    if start is None:
        return list(qs.order_by(*order)[:limit])
    value, start_pk = start
    lt, le = ("lt", "lte") if descending else ("gt", "gte")
    if value is None:
        # In the NULL part: the rest of it by id, then (descending) every non-NULL row.
        rest = Q(**{f"{column}__isnull": True, f"id__{lt}": start_pk})
        if descending:
            rest |= Q(**{f"{column}__isnull": False})
        return list(qs.filter(rest).order_by(*order)[:limit])
    after = Q(**{f"{column}__{le}": value}) & (
        Q(**{f"{column}__{lt}": value}) | Q(**{f"id__{lt}": start_pk})
    )
    rows = list(qs.filter(after).order_by(*order)[:limit])
    if not descending and len(rows) < limit:
        # Ascending, the NULLs come after every value: a second, short read (only at the
        # end of the list), so the first one stays an index range scan.
        rows += qs.filter(**{f"{column}__isnull": True}).order_by(pk.asc())[: limit - len(rows)]
    return rows


def invoice_keyset_page(
    qs: QuerySet[Invoice],
    *,
    sort_key: str,
    descending: bool,
    limit: int,
    cursor=None,
    last: bool = False,
    jump: datetime.date | None = None,
) -> KeysetPage:
    """The page after (or before) `cursor`, the last page, the page starting at the issue
    date `jump` (date sort), or the first page: one query, two at the end of an ascending
    list with drafts, one more for a jump (is there anything before it)."""
    column = SORT_FIELDS[sort_key]
    if last or (cursor is not None and not cursor.after):
        start = None if last else (cursor.value, cursor.pk)
        rows = _walk(qs, column, not descending, start, limit + 1)
        has_previous = len(rows) > limit
        rows = _as_rows(rows[:limit])
        rows.reverse()
        return KeysetPage(rows, has_previous, has_next=not last)
    if jump is not None:
        start = (jump, _MAX_ID) if descending else (jump - datetime.timedelta(days=1), _MAX_ID)
        rows = _walk(qs, column, descending, start, limit + 1)
        # Anything before the date? The id alone: the row's flag subqueries cost more to
        # plan (about 0.7 ms) than this look takes.
        before = _walk(qs.values_list("pk"), column, not descending, start, 1)
        return KeysetPage(_as_rows(rows[:limit]), bool(before), len(rows) > limit)
    start = None if cursor is None else (cursor.value, cursor.pk)
    rows = _walk(qs, column, descending, start, limit + 1)
    return KeysetPage(_as_rows(rows[:limit]), cursor is not None, len(rows) > limit)


def _as_rows(rows: list) -> list:
    """Tuples of invoice_list_row_values as ListRows; model instances stay as they are."""
    return [ListRow(row) if isinstance(row, tuple) else row for row in rows]


def cursor_value(invoice: Invoice, sort_key: str):
    return getattr(invoice, SORT_FIELDS[sort_key])


def _related_table(name: str) -> tuple[str, str]:
    """(table, invoice column) of a model that points at invoices by relation `name`
    (reports, payments), without importing its app."""
    field = Invoice._meta.get_field(name).field
    return field.model._meta.db_table, field.column


def _row_flags_sql(vendor: str) -> dict[str, str]:
    """The row annotations as SQL. Django compiled the same Exists/Subquery expressions
    in about 1 ms per page (more than running them); these strings are built once."""
    reports, report_fk = _related_table("reports")
    payments, payment_fk = _related_table("payments")
    invoices = Invoice._meta.db_table
    notes = CreditNote._meta.db_table
    if vendor == "postgresql":
        joined = "STRING_AGG(n.number || ' ' || n.total::text, ',')"
    else:
        joined = "GROUP_CONCAT(n.number || ' ' || n.total, ',')"
    # Table and column names from the models' metadata, no value from outside.
    return {
        # Same conditions as under_review_q() and payment_processing_flag().
        "under_review": f"EXISTS(SELECT 1 FROM {reports} r WHERE r.{report_fk} = "  # noqa: S608
        f"{invoices}.id AND r.resolved_at IS NULL)",
        "payment_processing": f"EXISTS(SELECT 1 FROM {payments} p WHERE p.{payment_fk} = "  # noqa: S608
        f"{invoices}.id AND p.status = 'processing')",
        "credit_note_list": f"(SELECT {joined} FROM {notes} n WHERE n.invoice_id = {invoices}.id)",  # noqa: S608
    }


_ROW_FLAGS: dict[str, dict[str, str]] = {}

# The invoice columns a list row reads: its id and the columns the list's version
# triggers watch (one list, so a row can never show a column whose change keeps the version).
LIST_ROW_FIELDS = ("id", *INVOICE_COLUMNS)


def invoice_list_rows(qs: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """Only the columns a list row shows, whether each is under review, whether a bank
    debit for it is processing, and its credit notes (credit_notes_of), in one query."""
    vendor = connection.vendor
    flags = _ROW_FLAGS.get(vendor) or _ROW_FLAGS.setdefault(vendor, _row_flags_sql(vendor))
    # RawSQL from the strings above (model metadata, no input).
    return qs.annotate(
        under_review=RawSQL(flags["under_review"], (), output_field=BooleanField()),  # noqa: S611
        payment_processing=RawSQL(flags["payment_processing"], (), output_field=BooleanField()),  # noqa: S611
        credit_note_list=RawSQL(flags["credit_note_list"], (), output_field=CharField()),  # noqa: S611
    ).only(*LIST_ROW_FIELDS)


def invoice_list_row_values(qs: QuerySet[Invoice]) -> QuerySet:
    """invoice_list_rows as tuples (LIST_ROW_FIELDS, then the flags and credit notes), for
    ListRow: building 25 model instances with 35 deferred fields each cost more than the
    query (about 1 ms of Python per page)."""
    return invoice_list_rows(qs).values_list(*LIST_ROW_FIELDS, *_ROW_EXTRAS)


_ROW_EXTRAS = ("under_review", "payment_processing", "credit_note_list")


class ListRow:
    """One row of the invoice list: the columns it reads, with the model's own rules (the
    same property objects and methods as Invoice's, so they are stated once)."""

    __slots__ = (*LIST_ROW_FIELDS, *_ROW_EXTRAS)

    def __init__(self, values: tuple):
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)

    @property
    def pk(self) -> int:
        return self.id

    ref = Invoice.ref
    amount_due = Invoice.amount_due
    amount_remaining = Invoice.amount_remaining
    has_einvoice = Invoice.has_einvoice
    is_payable = Invoice.is_payable
    is_overdue = Invoice.is_overdue


def credit_notes_of(row: Invoice) -> list[tuple[str, Decimal]]:
    """(number, total) of a list row's credit notes (invoice_list_rows), by number."""
    if not row.credit_note_list:
        return []
    pairs = (item.split(" ", 1) for item in row.credit_note_list.split(","))
    return sorted((number, Decimal(total)) for number, total in pairs)


# --- The list's count and summary cards, from the rollup --------------------------------
#
# Counting and summing a customer's 100,000 invoices costs tens of milliseconds. The
# rollup (InvoiceRollup: per customer, currency, status, issue month and due month, kept
# by database triggers) answers the count and the summary cards in one aggregate over a
# few hundred rows. What it cannot know exactly is read from the invoices, each part
# bounded by a month or a fixed limit, never by the customer's history:
# - a date range that starts or ends inside a month: the invoices of those edge days;
# - Overdue (Open and due before today) inside the current month: the Open invoices due
#   between the first of this month and yesterday;
# - a search (q) or "Under review": counted on the invoices, a search at most up to
#   SEARCH_COUNT_LIMIT (the page says "more than" beyond it).

SEARCH_COUNT_LIMIT = SEARCH_ID_LIMIT


@dataclass
class CurrencyTotals:
    currency: str
    paid: Decimal
    pending: Decimal
    overdue: Decimal
    written_off: Decimal = ZERO


@dataclass
class ListTotals:
    count: int
    count_is_lower_bound: bool  # a search matched more than SEARCH_COUNT_LIMIT
    summary: list[CurrencyTotals]


def _month_start(day: datetime.date) -> datetime.date:
    return day.replace(day=1)


def _next_month(day: datetime.date) -> datetime.date:
    return (day.replace(day=1) + datetime.timedelta(days=32)).replace(day=1)


def _owed() -> ExpressionWrapper:
    return ExpressionWrapper(
        F("total") - F("pre_payment_credit_notes_amount") - F("applied_balance") - F("amount_paid"),
        output_field=DecimalField(),
    )


# (currency, status, overdue) -> [count, amount_paid, owed]
_Buckets = dict[tuple[str, str, bool], list]


def _add_bucket(buckets: _Buckets, key, n, paid, owed) -> None:
    bucket = buckets.setdefault(key, [0, ZERO, ZERO])
    bucket[0] += n
    bucket[1] += paid or ZERO
    bucket[2] += owed or ZERO


def _split_range(
    date_from: datetime.date | None, date_to: datetime.date | None
) -> tuple[tuple[datetime.date | None, datetime.date | None] | None, list[tuple]]:
    """An issue-date range as the months the rollup answers, [lo, hi) with None for
    unbounded (or None when no whole month is inside), and the day ranges read from the
    invoices, (first, last inclusive, sign).

    A range that cuts through a month either adds the days of that month inside it (sign
    1) or takes the whole month from the rollup and removes the days outside it (sign -1),
    whichever reads fewer days: an edge then costs at most half a month of invoices."""
    one_day = datetime.timedelta(days=1)
    if date_from and date_to and _month_start(date_from) == _month_start(date_to):
        if date_from.day == 1 and _next_month(date_to) - one_day == date_to:
            return (date_from, _next_month(date_to)), []
        return None, [(date_from, date_to, 1)]
    lo = hi = None
    edges = []
    if date_from:
        lo = _month_start(date_from)
        if date_from != lo:
            inside, outside = _next_month(date_from) - date_from, date_from - lo
            if outside < inside:
                edges.append((lo, date_from - one_day, -1))
            else:
                lo = _next_month(date_from)
                edges.append((date_from, lo - one_day, 1))
    if date_to:
        hi = _next_month(date_to)
        if date_to != hi - one_day:
            inside, outside = date_to - _month_start(date_to) + one_day, hi - one_day - date_to
            if outside < inside:
                edges.append((date_to + one_day, hi - one_day, -1))
            else:
                hi = _month_start(date_to)
                edges.append((hi, date_to, 1))
    if lo and hi and hi <= lo:
        return None, [(date_from, date_to, 1)]
    return (lo, hi), edges


_OWED_SQL = "(total - pre_payment_credit_notes_amount - applied_balance - amount_paid)"


def invoice_list_buckets(
    customer: Customer,
    *,
    today: datetime.date,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> _Buckets:
    """The customer's invoices issued in the range, counted and summed per currency, status
    and overdue: one statement (a round trip costs more than this SQL on a busy machine),
    of which no part grows with the customer's invoices:
    - the rollup's rows of the whole months in the range;
    - Open invoices due earlier this month, moved from not overdue to overdue (the rollup
      knows the due month, not the day);
    - the invoices of the edge days of a range that cuts through a month: the days inside
      it added, or the whole month taken from the rollup and the days outside it taken
      away, whichever is shorter (_split_range).
    """
    adapt = connection.ops.adapt_datefield_value
    this_month = _month_start(today)
    months, edges = _split_range(date_from, date_to)
    params: dict = {
        "customer": customer.pk,
        "today": adapt(today),
        "this_month": adapt(this_month),
        "no_date": adapt(NO_DATE),
        "open": InvoiceStatus.OPEN.value,
    }
    parts = []
    if months is not None:
        lo, hi = months
        where, issued = "", ""
        if date_from or date_to:
            where += " AND issue_month <> %(no_date)s"  # drafts: never inside a date range
        if lo:
            params["lo"] = adapt(lo)
            where += " AND issue_month >= %(lo)s"
            issued += " AND issue_date >= %(lo)s"
        if hi:
            params["hi"] = adapt(hi)
            where += " AND issue_month < %(hi)s"
            issued += " AND issue_date < %(hi)s"
        parts.append(
            "SELECT currency, status, CASE WHEN status = %(open)s AND due_month < %(this_month)s"  # noqa: S608 - constant SQL, values are parameters
            " AND due_month <> %(no_date)s THEN 1 ELSE 0 END AS late,"
            " invoice_count AS n, amount_paid AS paid, owed"
            " FROM invoices_invoicerollup WHERE customer_id = %(customer)s" + where
        )
        if today > this_month:
            for late, sign in ((1, ""), (0, "-")):
                parts.append(
                    f"SELECT currency, status, {late} AS late, {sign}1 AS n,"  # noqa: S608 - constant SQL
                    f" {sign}amount_paid AS paid, {sign}{_OWED_SQL} AS owed FROM invoices_invoice"
                    " WHERE customer_id = %(customer)s AND status = %(open)s"
                    " AND due_date >= %(this_month)s AND due_date < %(today)s" + issued
                )
    for sign in (1, -1):
        ranges = []
        for i, (first, last, edge_sign) in enumerate(edges):
            if edge_sign == sign:
                params[f"first{i}"], params[f"last{i}"] = adapt(first), adapt(last)
                ranges.append(f"(issue_date >= %(first{i})s AND issue_date <= %(last{i})s)")
        if not ranges:
            continue
        minus = "-" if sign < 0 else ""
        parts.append(
            "SELECT currency, status, CASE WHEN status = %(open)s AND due_date < %(today)s"  # noqa: S608 - constant SQL, values are parameters
            f" THEN 1 ELSE 0 END AS late, {minus}1 AS n, {minus}amount_paid AS paid,"
            f" {minus}{_OWED_SQL} AS owed FROM invoices_invoice"
            f" WHERE customer_id = %(customer)s AND ({' OR '.join(ranges)})"
        )
    sql = (
        "SELECT currency, status, late, SUM(n), SUM(paid), SUM(owed) FROM ("  # noqa: S608 - constant SQL, values are parameters
        + " UNION ALL ".join(parts)
        + ") AS parts GROUP BY currency, status, late"
    )
    buckets: _Buckets = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for currency, status, late, n, paid, owed in cursor.fetchall():
            _add_bucket(buckets, (currency, status, bool(late)), int(n), _money(paid),
                        _money(owed))  # fmt: skip
    return buckets


def _money(value) -> Decimal:
    """A sum as Decimal cents (SQLite, the demo, sums in floating point)."""
    if value is None:
        return ZERO
    if not isinstance(value, Decimal):
        value = Decimal(str(round(value, 2)))
    return value.quantize(Decimal("0.01"))


def _summary_of(buckets: _Buckets) -> list[CurrencyTotals]:
    cards: dict[str, CurrencyTotals] = {}
    for (currency, status, late), (n, paid, owed) in sorted(buckets.items()):
        if status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID) or not n:
            continue
        card = cards.setdefault(currency, CurrencyTotals(currency, ZERO, ZERO, ZERO, ZERO))
        if status == InvoiceStatus.PAID:
            card.paid += paid
        elif status == InvoiceStatus.OPEN:
            card.pending += owed
            if late:
                card.overdue += owed
        elif status == InvoiceStatus.UNCOLLECTIBLE:
            card.written_off += owed
    return [cards[c] for c in sorted(cards)]


def _count_of(buckets: _Buckets, status: str) -> int:
    if not status:
        return sum(b[0] for b in buckets.values())
    if status == OVERDUE:
        return sum(b[0] for (_, s, late), b in buckets.items() if s == InvoiceStatus.OPEN and late)
    return sum(b[0] for (_, s, _late), b in buckets.items() if s == status)


def invoice_list_totals(
    customer: Customer,
    query: InvoiceQuery,
    *,
    today: datetime.date,
    filtered: QuerySet[Invoice],
) -> ListTotals:
    """How many invoices match `query` (`filtered`: invoice_filter's queryset for it) and the
    summary cards of its date range."""
    buckets = invoice_list_buckets(
        customer, today=today, date_from=query.date_from, date_to=query.date_to
    )
    if (
        query.q
        and query.search_ids is not None
        and not (query.status or query.date_from or query.date_to)
    ):
        # The search's id list is the answer: no other filter narrows it.
        count, lower_bound = len(query.search_ids), False
    elif query.q:
        found = filtered.order_by().values("pk")[: SEARCH_COUNT_LIMIT + 1].count()
        count, lower_bound = min(found, SEARCH_COUNT_LIMIT), found > SEARCH_COUNT_LIMIT
    elif query.status == UNDER_REVIEW:
        count, lower_bound = filtered.order_by().count(), False
    else:
        count, lower_bound = _count_of(buckets, query.status), False
    return ListTotals(count, lower_bound, _summary_of(buckets))


def invoice_summary(
    customer: Customer,
    *,
    today: datetime.date,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> list[CurrencyTotals]:
    """Total Paid / Pending / Overdue per currency for invoices issued in the range.

    Each card is what the list shows under one status filter, so the customer can add it up:
    Paid sums the Paid filter, Pending what is still owed on the Open filter's invoices,
    Overdue the part of it past the due date (the Overdue filter). What staff wrote off
    (Uncollectible) is still owed but is not pending: it has a card of its own, written_off.
    """
    return _summary_of(
        invoice_list_buckets(customer, today=today, date_from=date_from, date_to=date_to)
    )


def invoice_summary_direct(
    customer: Customer,
    *,
    today: datetime.date,
    date_from: datetime.date | None,
    date_to: datetime.date | None,
) -> list[CurrencyTotals]:
    """invoice_summary computed over the invoices themselves (tests compare the two)."""
    qs = invoices_of(customer)
    if date_from:
        qs = qs.filter(issue_date__gte=date_from)
    if date_to:
        qs = qs.filter(issue_date__lte=date_to)
    zero = Value(ZERO, output_field=DecimalField())
    owed = _owed()
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
