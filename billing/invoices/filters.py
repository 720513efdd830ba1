"""The invoice list's filters (django-filter), read leniently.

A customer who edits the URL by hand (or follows an old bookmark) gets the page with a
visible note about what was ignored, never an error page: the notes come from the filter
form's errors, and the field that failed is dropped. The FilterSet also applies the filter
to the customer's invoices (billing.invoices.selectors.invoice_filter); sorting and paging
stay in the selectors, which read the far end of a long list backwards.
"""

import base64
import binascii
import datetime
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import django_filters
from django import forms
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contracts.models import Customer
from core import l10n

from .models import Invoice, InvoiceLine, InvoiceStatus, overdue_q, under_review_q

OVERDUE = "overdue"
UNDER_REVIEW = "under_review"
STATUS_CHOICES = [
    ("", gettext_lazy("All")),
    (InvoiceStatus.OPEN.value, gettext_lazy("Open")),
    (OVERDUE, gettext_lazy("Overdue")),
    (InvoiceStatus.PAID.value, gettext_lazy("Paid")),
    (InvoiceStatus.DRAFT.value, gettext_lazy("Draft")),
    (InvoiceStatus.VOID.value, gettext_lazy("Void")),
    (InvoiceStatus.REFUND.value, gettext_lazy("Refund")),
    (InvoiceStatus.UNCOLLECTIBLE.value, gettext_lazy("Uncollectible")),
    (UNDER_REVIEW, gettext_lazy("Under review")),
]
STATUS_VALUES = frozenset(value for value, _ in STATUS_CHOICES)

# Public sort key -> model field. A leading "-" in the query means descending.
SORT_FIELDS = {
    "number": "number",
    "date": "issue_date",
    "due": "due_date",
    "amount": "total",
    "status": "status",
}
SORT_LABELS = {
    "number": gettext_lazy("Number"),
    "date": gettext_lazy("Issue date"),
    "due": gettext_lazy("Due date"),
    "amount": gettext_lazy("Amount"),
    "status": gettext_lazy("Status"),
}
DEFAULT_SORT = "-date"
SORT_CHOICES = frozenset(SORT_FIELDS) | {f"-{key}" for key in SORT_FIELDS}
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
MAX_QUERY_LENGTH = 100
MAX_CURSOR_LENGTH = 200


@dataclass(frozen=True)
class Cursor:
    """A place in the sorted list: the sort column's value (None for a draft's empty one)
    and the invoice id, which breaks ties. `after` reads on from it, else back."""

    sort: str
    value: object
    pk: int
    after: bool = True

    def encode(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime.date) else self.value
        value = str(value) if isinstance(value, Decimal) else value
        raw = json.dumps(["a" if self.after else "b", self.sort, value, self.pk])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _sort_value(sort_key: str, raw):
    """The column value of a cursor, typed as the column is; ValueError when it is not."""
    if raw is None:
        if sort_key in ("amount", "status"):  # NOT NULL columns
            raise ValueError(raw)
        return None
    if not isinstance(raw, str) or len(raw) > 40:
        raise ValueError(raw)
    if sort_key in ("date", "due"):
        return datetime.date.fromisoformat(raw)
    if sort_key == "amount":
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ValueError(raw) from None
        if not value.is_finite():
            raise ValueError(raw)
        return value
    return raw


def decode_cursor(text: str) -> Cursor:
    """The cursor of a page link; ValueError for anything we did not make."""
    if len(text) > MAX_CURSOR_LENGTH:
        raise ValueError("too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        direction, sort, value, pk = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValueError("not a cursor") from None
    if direction not in ("a", "b") or sort not in SORT_CHOICES:
        raise ValueError("not a cursor")
    if not isinstance(pk, int) or isinstance(pk, bool) or not 0 <= pk < 2**63:
        raise ValueError("not a cursor")
    return Cursor(sort, _sort_value(sort.removeprefix("-"), value), pk, direction == "a")


@dataclass
class InvoiceQuery:
    status: str = ""
    q: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    sort: str = DEFAULT_SORT
    page: int = 1  # only from an old link (?page=N); new links carry a cursor
    per_page: int = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None
    last: bool = False  # the last page (the start of the reverse order)
    jump: datetime.date | None = None  # the first page from this issue date (date sort)
    notes: list[str] = field(default_factory=list)
    # Set by invoice_filter_queryset: the ids a search found (None: more than
    # SEARCH_ID_LIMIT), so the list counts them without another query.
    search_ids: list[int] | None = None

    @property
    def sort_key(self) -> str:
        return self.sort.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    def filter_params(self) -> dict[str, str]:
        """The filter as query parameters (no page), for CSV links and sort headers."""
        params = {
            "status": self.status,
            "q": self.q,
            "date_from": self.date_from.isoformat() if self.date_from else "",
            "date_to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in params.items() if v}

    def filter_key(self) -> str:
        """Everything that decides which invoices match, for cache keys."""
        return f"{self.status}:{self.date_from}:{self.date_to}:{self.q.encode().hex()}"


# A plain run of ASCII digits: Django's IntegerField would also take "٣" or " 3 ".
_DIGITS = re.compile(r"^[0-9]{1,9}$")


class _DigitsField(forms.CharField):
    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        if not _DIGITS.match(value) or int(value) < 1:
            raise forms.ValidationError("not a positive whole number", code="invalid")
        return int(value)


class InvoiceFilterForm(forms.Form):
    """The filter fields (added by the FilterSet) plus paging, which filters nothing."""

    per_page = forms.TypedChoiceField(
        choices=[(str(size), size) for size in PAGE_SIZES], coerce=int, required=False
    )
    page = _DigitsField(required=False)
    cursor = forms.CharField(required=False, max_length=MAX_CURSOR_LENGTH)
    last = forms.BooleanField(required=False)
    jump = forms.DateField(required=False, input_formats=["%Y-%m-%d"])


class InvoiceFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=STATUS_CHOICES[1:], method="filter_status")
    q = django_filters.CharFilter(method="filter_search", max_length=MAX_QUERY_LENGTH)
    date_from = django_filters.DateFilter(
        field_name="issue_date", lookup_expr="gte", input_formats=["%Y-%m-%d"]
    )
    date_to = django_filters.DateFilter(
        field_name="issue_date", lookup_expr="lte", input_formats=["%Y-%m-%d"]
    )
    # Validated here; applied by selectors.invoice_keyset_page (drafts first when descending).
    sort = django_filters.ChoiceFilter(
        choices=[(key, SORT_LABELS[key]) for key in SORT_FIELDS]
        + [(f"-{key}", SORT_LABELS[key]) for key in SORT_FIELDS],
        method="keep",
    )

    class Meta:
        model = Invoice
        fields: list[str] = []
        form = InvoiceFilterForm

    def __init__(self, data=None, *, customer: Customer, today: datetime.date, **kwargs):
        super().__init__(data, **kwargs)
        self.customer = customer
        self.today = today

    def filter_queryset(self, queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
        # The form also carries paging (per_page, page), which filters nothing.
        for name, value in self.form.cleaned_data.items():
            if name in self.filters:
                queryset = self.filters[name].filter(queryset, value)
        return queryset

    def filter_status(self, qs: QuerySet[Invoice], name: str, value: str) -> QuerySet[Invoice]:
        return status_filter(qs, value, self.today)

    def filter_search(self, qs: QuerySet[Invoice], name: str, value: str) -> QuerySet[Invoice]:
        return search_invoices(qs, self.customer, value)

    def keep(self, qs: QuerySet[Invoice], name: str, value: str) -> QuerySet[Invoice]:
        return qs


@lru_cache(maxsize=1)
def _form_class() -> type[forms.Form]:
    """The FilterSet's form class, built once per process: django-filter builds a new class
    (and a field per filter) for every FilterSet, about 0.8 ms per page view; the filters
    and their fields depend on nothing of the request."""
    return InvoiceFilterSet(customer=None, today=None).get_form_class()


def lenient_params(params: QueryDict) -> dict[str, str]:
    """The query as the form reads it: status in any case, a search with its spaces collapsed."""
    data = {name: params.get(name, "").strip() for name in InvoiceFilterSet.base_filters}
    data["status"] = data["status"].lower()
    data["q"] = " ".join(params.get("q", "").split())[:MAX_QUERY_LENGTH]
    for name in ("per_page", "page", "cursor", "last", "jump"):
        data[name] = params.get(name, "").strip()
    return data


def _note(name: str, raw: str) -> str:
    """What the page says about a value it ignored (the form's error, in the page's words)."""
    shown, short, date = raw[:30], raw[:10], raw[:20]
    notes = {
        "status": _("Unknown status “%(value)s”; showing invoices in every status."),
        "date_from": _(
            "“%(date)s” is not a date in the form YYYY-MM-DD; the start date is ignored."
        ),
        "date_to": _("“%(date)s” is not a date in the form YYYY-MM-DD; the end date is ignored."),
        "sort": _("Cannot sort by “%(value)s”; sorted by issue date, newest first."),
        "per_page": _("Page size “%(short)s” is not offered; showing %(size)s."),
        "page": _("There is no page “%(short)s”; showing the first page."),
        "cursor": _("This page link is not valid (any more); showing the first page."),
        "jump": _("“%(date)s” is not a date in the form YYYY-MM-DD; showing the first page."),
    }
    text = notes.get(name) or _("“%(value)s” is ignored.")
    return text % {"value": shown, "short": short, "date": date, "size": DEFAULT_PAGE_SIZE}


def parse_invoice_query(
    params: QueryDict, *, customer: Customer, today: datetime.date
) -> InvoiceQuery:
    """The list's query from the URL: every field the form refuses is noted and dropped."""
    data = lenient_params(params)
    form = _form_class()(data)
    notes: list[str] = []
    if not form.is_valid():
        for name in form.errors:
            notes.append(_note(name, data.get(name, "")))
            data[name] = ""
        form = _form_class()(data)
        form.is_valid()
    clean = form.cleaned_data
    query = InvoiceQuery(
        status=clean.get("status") or "",
        q=clean.get("q") or "",
        date_from=clean.get("date_from"),
        date_to=clean.get("date_to"),
        sort=clean.get("sort") or DEFAULT_SORT,
        page=clean.get("page") or 1,
        per_page=clean.get("per_page") or DEFAULT_PAGE_SIZE,
        last=bool(clean.get("last")),
        jump=clean.get("jump"),
        notes=notes,
    )
    if clean.get("cursor"):
        try:
            query.cursor = decode_cursor(clean["cursor"])
        except ValueError:
            notes.append(_note("cursor", ""))
        else:
            if query.cursor.sort != query.sort:  # a link of another sort order
                notes.append(_note("cursor", ""))
                query.cursor = None
    if query.jump and query.sort_key != "date":
        notes.append(
            _("A jump to a date needs the list sorted by issue date; showing the first page.")
        )
        query.jump = None
    if query.date_from and query.date_to and query.date_from > query.date_to:
        notes.append(
            _(
                "The date range was backwards (%(start)s after %(end)s); "
                "the dates have been swapped."
            )
            % {"start": l10n.date(query.date_from), "end": l10n.date(query.date_to)}
        )
        query.date_from, query.date_to = query.date_to, query.date_from
    return query


def invoice_filter_queryset(
    qs: QuerySet[Invoice], query: InvoiceQuery, *, customer: Customer, today: datetime.date
) -> QuerySet[Invoice]:
    """Apply a parsed (already validated) query's filters: status, dates, search.

    The same filters as the FilterSet's, applied straight away: a second FilterSet (its
    filters deep-copied, its form built and validated again) cost about a millisecond
    per page view.
    """
    if query.status:
        qs = status_filter(qs, query.status, today)
    if query.date_from:
        qs = qs.filter(issue_date__gte=query.date_from)
    if query.date_to:
        qs = qs.filter(issue_date__lte=query.date_to)
    if query.q:
        query.search_ids = search_ids(customer, query.q)
        qs = search_invoices(qs, customer, query.q, found=query.search_ids)
    return qs


def status_filter(qs: QuerySet[Invoice], value: str, today: datetime.date) -> QuerySet[Invoice]:
    if value == OVERDUE:
        return qs.filter(overdue_q(today))
    if value == UNDER_REVIEW:
        return qs.filter(under_review_q())
    return qs.filter(status=value)


# The start of an invoice number ("INV-2026-0001", "inv-"): series letters and a dash.
NUMBER_START = re.compile(r"^[A-Za-z]+-[0-9-]*$")
# What the start of an IPv4 block's prefix ("185.200.0.0/22") can contain.
PREFIX_START = re.compile(r"^[0-9./]+$")


# A search matching more invoices than this is answered by a subquery instead of a list.
SEARCH_ID_LIMIT = 2000


def _search_union(customer: Customer, text: str) -> QuerySet:
    if NUMBER_START.match(text):
        by_number = Invoice.objects.filter(number__startswith=text.upper())
    else:
        by_number = Invoice.objects.filter(number__icontains=text)
    lines = InvoiceLine.objects.order_by().filter(invoice__customer=customer)
    parts = [lines.filter(description__icontains=text).values_list("invoice_id", flat=True)]
    if PREFIX_START.match(text):
        # Only a text that can begin a block's prefix looks there: planning this third
        # join cost about 0.5 ms of every search (as much as running the whole search).
        parts.append(
            lines.filter(block__prefix__startswith=text).values_list("invoice_id", flat=True)
        )
    return by_number.filter(customer=customer).order_by().values_list("pk", flat=True).union(*parts)


def search_ids(customer: Customer, text: str) -> list[int] | None:
    """The ids of the customer's invoices the search finds (one query), or None when there
    are more than SEARCH_ID_LIMIT."""
    found = list(_search_union(customer, text)[: SEARCH_ID_LIMIT + 1])
    return found if len(found) <= SEARCH_ID_LIMIT else None


def search_invoices(
    qs: QuerySet[Invoice], customer: Customer, text: str, *, found: list[int] | None = None
) -> QuerySet[Invoice]:
    """Number, line description or block prefix, one row per invoice.

    Three separate indexed lookups joined by UNION on the invoice id, never an OR across
    joins (which PostgreSQL can only answer by scanning every invoice of the customer).
    A query that starts like an invoice number matches numbers by prefix through the
    unique number's btree: its trigrams ("INV", "-20", "000") are in every number, so the
    trigram index would read all of them. Numbers are issued in upper case.

    The ids are read first (one query; `found` when the caller has read them already)
    when there are few of them: the planner cannot estimate a UNION of LIKEs and would
    otherwise hash-join all the customer's invoices.
    """
    if found is None:
        found = search_ids(customer, text)
    if found is not None:
        return qs.filter(pk__in=found)
    return qs.filter(pk__in=_search_union(customer, text))
