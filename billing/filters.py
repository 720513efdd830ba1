"""The invoice list's query string, read leniently.

A customer who edits the URL by hand (or follows an old bookmark) gets the page
with a visible note about what was ignored, never an error page. Parsing lives
here; the SQL lives in billing.selectors.
"""

import datetime
from dataclasses import dataclass, field

from django.http import QueryDict

from .models import InvoiceStatus

OVERDUE = "overdue"
STATUS_CHOICES = [
    ("", "All"),
    (InvoiceStatus.OPEN.value, "Open"),
    (OVERDUE, "Overdue"),
    (InvoiceStatus.PAID.value, "Paid"),
    (InvoiceStatus.DRAFT.value, "Draft"),
    (InvoiceStatus.VOID.value, "Void"),
    (InvoiceStatus.REFUND.value, "Refund"),
    (InvoiceStatus.UNCOLLECTIBLE.value, "Uncollectible"),
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
    "number": "Number",
    "date": "Issue date",
    "due": "Due date",
    "amount": "Amount",
    "status": "Status",
}
DEFAULT_SORT = "-date"
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
MAX_QUERY_LENGTH = 100


@dataclass
class InvoiceQuery:
    status: str = ""
    q: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    sort: str = DEFAULT_SORT
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE
    notes: list[str] = field(default_factory=list)

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


def _parse_date(raw: str, label: str, notes: list[str]) -> datetime.date | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return datetime.date.fromisoformat(raw)
    except ValueError:
        notes.append(f"“{raw[:20]}” is not a date in the form YYYY-MM-DD; the {label} is ignored.")
        return None


def _parse_int(raw: str) -> int | None:
    raw = raw.strip()
    if raw.isascii() and raw.isdigit() and len(raw) < 10:
        return int(raw)
    return None


def parse_invoice_query(params: QueryDict) -> InvoiceQuery:
    notes: list[str] = []
    query = InvoiceQuery(notes=notes)

    status = params.get("status", "").strip().lower()
    if status in STATUS_VALUES:
        query.status = status
    else:
        notes.append(f"Unknown status “{status[:30]}”; showing invoices in every status.")

    query.q = " ".join(params.get("q", "").split())[:MAX_QUERY_LENGTH]

    query.date_from = _parse_date(params.get("date_from", ""), "start date", notes)
    query.date_to = _parse_date(params.get("date_to", ""), "end date", notes)
    if query.date_from and query.date_to and query.date_from > query.date_to:
        notes.append(
            f"The date range was backwards ({query.date_from} after {query.date_to}); "
            "the dates have been swapped."
        )
        query.date_from, query.date_to = query.date_to, query.date_from

    sort = params.get("sort", "").strip()
    if not sort:
        query.sort = DEFAULT_SORT
    elif sort.removeprefix("-") in SORT_FIELDS:
        query.sort = sort
    else:
        notes.append(f"Cannot sort by “{sort[:30]}”; sorted by issue date, newest first.")

    raw_size = params.get("per_page", "")
    size = _parse_int(raw_size)
    if raw_size and size not in PAGE_SIZES:
        notes.append(f"Page size “{raw_size[:10]}” is not offered; showing {DEFAULT_PAGE_SIZE}.")
    elif size:
        query.per_page = size

    raw_page = params.get("page", "")
    page = _parse_int(raw_page)
    if raw_page and not page:
        notes.append(f"There is no page “{raw_page[:10]}”; showing the first page.")
    elif page:
        query.page = page
    return query
