"""The invoice list's body, cached under a version the database keeps.

A repeat view of /invoices/ (same customer, same query, nothing changed) is served from a
cached copy of the page body: the user's query, one read of the customer's
InvoiceListVersion and one cache get, instead of the totals and the rows. The page shell
(header, the person's name, CSRF tokens, messages) is rendered on every view.

Why it cannot go stale: the version is changed by database triggers in the same
transaction as every write of what the list shows (billing.invoices.triggers), so no code
path has to remember to announce a change. The version is read *before* anything else of
the page, so a body computed from data newer than its version is possible, older never.

The count and summary cards (selectors.ListTotals) are cached the same way (fetched and
stored with the body, so no extra round trip), keyed by the version, the day and the
filter only: another page of a filter already seen (next, previous, last, a date jump)
skips the totals statement.

The key holds everything else the body depends on: the customer, the version, today's date
(overdue badges, the Overdue card), the language, whether the person may pay (the row
menu), the page's query parameters as the page reads them, and a fingerprint of the code
and templates that write the body (a deploy never serves the old markup). A cache that
fails (Redis down, the breaker open) is a miss: the page is computed, never an error.
"""

import datetime
import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils.translation import get_language

from .filters import lenient_params
from .triggers import VERSION_TABLE

logger = logging.getLogger(__name__)

_VERSION_SQL = f"SELECT version FROM {VERSION_TABLE} WHERE customer_id = %s"  # noqa: S608 - a constant table name


def cache_seconds() -> int:
    """How long a body is kept; 0 switches the cache off."""
    return getattr(settings, "INVOICE_LIST_CACHE_SECONDS", 300)


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of what writes the body (this app's code, the list template, the compiled
    translations), computed once per process."""
    root = Path(settings.BASE_DIR)
    here = Path(__file__).resolve().parent
    files = [here / name for name in ("views.py", "selectors.py", "filters.py", "models.py")]
    # The row and cell formatting the body uses from elsewhere.
    files += [here / "templatetags" / "invoices.py", root / "core" / "l10n.py"]
    files.append(root / "core" / "templatetags" / "l10n_format.py")
    files.append(root / "templates" / "billing" / "invoice_list.html")
    files += sorted(root.glob("locale/*/LC_MESSAGES/django.mo"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()[:16]


def list_version(customer) -> int | None:
    """The customer's version: joined into the login's membership query
    (settings.MEMBERSHIP_CUSTOMER_RELATED, read at the start of the request, before any
    of the list's data), else read now."""
    if "invoice_list_version" in customer._state.fields_cache:
        row = customer._state.fields_cache["invoice_list_version"]
        return None if row is None else row.version
    with connection.cursor() as cursor:
        cursor.execute(_VERSION_SQL, [customer.pk])
        found = cursor.fetchone()
    return found[0] if found else None


def by_version(customer, name: str, compute):
    """A small value about the customer's invoices (`compute()`, a tuple of plain values or
    None), kept in the cache under the customer's version: it cannot outlive a change to
    any of their invoices. None is not stored. Without a version row, or with the cache
    down, it is computed every time."""
    version = list_version(customer) if cache_seconds() else None
    if version is None:
        return compute()
    key = f"invoice-facts:{customer.pk}:{version}:{hashlib.sha256(name.encode()).hexdigest()[:32]}"
    try:
        found = cache.get(key)
    except Exception as exc:  # noqa: BLE001 - a cache outage is a miss, never an error page
        logger.info("invoice cache unavailable: %s", exc)
        return compute()
    if found is not None:
        return found
    value = compute()
    if value is not None:
        try:
            cache.set(key, value, cache_seconds())
        except Exception as exc:  # noqa: BLE001 - as above
            logger.info("invoice facts not cached: %s", exc)
    return value


class ListBody:
    """What the cache had for one list view: the body (`html`, None on a miss) and the
    count and cards of its filter (`cached_totals`), read in one round trip; and where to
    store both once the body is rendered (`store`, called by the template's
    {% list_body %} tag: one round trip again)."""

    def __init__(
        self,
        key: str | None,
        html: str | None = None,
        *,
        totals_key: str | None = None,
        cached_totals=None,
    ):
        self.key = key
        self.html = html
        self.totals_key = totals_key
        self.cached_totals = cached_totals
        self._new_totals = None

    def totals(self, compute):
        """The list's count and cards (selectors.ListTotals): the cached ones of this filter
        (another page of it: next, previous, last, a date jump), else `compute()`, stored
        with the body."""
        if self.cached_totals is not None:
            return self.cached_totals
        self._new_totals = compute()
        return self._new_totals

    def store(self, html: str) -> None:
        if self.key is None:
            return
        values = {self.key: html}
        if self._new_totals is not None and self.totals_key:
            values[self.totals_key] = self._new_totals
        try:
            cache.set_many(values, cache_seconds())
        except Exception as exc:  # noqa: BLE001 - a cache outage is a miss, never an error page
            logger.info("invoice list body not cached: %s", exc)


def body_key(
    customer_id: int,
    version: int,
    params,
    *,
    today: datetime.date,
    can_pay: bool,
    language: str | None = None,
) -> str:
    query = json.dumps(sorted(lenient_params(params).items()), separators=(",", ":"))
    shape = f"{today.isoformat()}:{language or get_language()}:{int(can_pay)}:{query}"
    digest = hashlib.sha256(shape.encode()).hexdigest()[:32]
    return f"invoice-list:{code_fingerprint()}:{customer_id}:{version}:{digest}"


# The parameters the count and cards depend on (InvoiceQuery's filter, not its page).
_FILTER_PARAMS = ("status", "q", "date_from", "date_to")


def totals_key(customer_id: int, version: int, params, *, today: datetime.date) -> str:
    """The key of a filter's count and cards: the body's version and day, the filter's
    parameters as the page reads them; neither the page, the language nor the role."""
    data = lenient_params(params)
    query = json.dumps([data[name] for name in _FILTER_PARAMS], separators=(",", ":"))
    digest = hashlib.sha256(f"{today.isoformat()}:{query}".encode()).hexdigest()[:32]
    return f"invoice-list-totals:{code_fingerprint()}:{customer_id}:{version}:{digest}"


def list_body(customer, params, *, today: datetime.date, can_pay: bool) -> ListBody:
    """What the cache has for this view (body, and the totals of its filter: one get), or a
    miss that knows where to store them. No cache for a customer without a version row."""
    if not cache_seconds():
        return ListBody(None)
    version = list_version(customer)
    if version is None:
        return ListBody(None)
    key = body_key(customer.pk, version, params, today=today, can_pay=can_pay)
    totals = totals_key(customer.pk, version, params, today=today)
    try:
        found = cache.get_many([key, totals])
    except Exception as exc:  # noqa: BLE001 - a cache outage is a miss, never an error page
        logger.info("invoice list cache unavailable: %s", exc)
        return ListBody(None)
    html = found.get(key)
    return ListBody(
        key,
        html if isinstance(html, str) else None,
        totals_key=totals,
        cached_totals=found.get(totals),
    )
