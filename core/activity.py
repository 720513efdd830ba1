"""The customer's own activity: their audit entries, in plain words, from an allow-list.

The audit log is written for staff: it holds system steps, provider ids and staff notes.
A customer sees only the actions an app has registered here, each with the sentence that
tells it (never the entry's note, which is staff's). Apps register their own actions
(`<app>/activity.py`, imported from the app's ready()), so core names none of them and a new
action stays hidden until someone decides how a customer should read it.

Sentences are written when the page is read, in the active language (gettext in the
sentence functions): the entry keeps values, never words, so one entry reads in English on
one person's page and in German on another's.

A sentence may need more than the entry holds (the invoice a payment was for): an app
registers a loader that fetches that for a whole page of entries in one query.
"""

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import l10n
from .models import AuditEntry

# The filter's groups, in the order the page offers them.
# Labels are lazy: the page reads them in the person's language, the JSON API in English.
KINDS: dict[str, str] = {
    "invoices": _("Invoices"),
    "payments": _("Payments"),
    "contracts": _("Contracts and blocks"),
    "account": _("Account and security"),
    "emails": _("E-mails sent"),
}

Sentence = Callable[[AuditEntry, dict[str, Any]], str]
Loader = Callable[[list[AuditEntry]], dict[str, Any]]


@dataclass(frozen=True)
class _Registered:
    kind: str
    sentence: Sentence


_EXACT: dict[str, _Registered] = {}
_PREFIXES: dict[str, _Registered] = {}
_LOADERS: list[Loader] = []


def customer_action(
    action: str, *, kind: str, prefix: bool = False
) -> Callable[[Sentence], Sentence]:
    """Register `sentence(entry, loaded) -> str` for `action` (or every action starting with
    it, prefix=True): from now on customers see such entries on their activity page."""
    if kind not in KINDS:
        raise ValueError(f"Unknown activity kind {kind!r}.")

    def register(sentence: Sentence) -> Sentence:
        (_PREFIXES if prefix else _EXACT)[action] = _Registered(kind, sentence)
        return sentence

    return register


def activity_loader(loader: Loader) -> Loader:
    """Register `loader(entries) -> dict` run once per page; sentences get the merged dicts."""
    _LOADERS.append(loader)
    return loader


def _registered(action: str) -> _Registered | None:
    found = _EXACT.get(action)
    if found is None:
        found = next((r for p, r in _PREFIXES.items() if action.startswith(p)), None)
    return found


def _visible_q(kind: str = "") -> Q:
    exact = [a for a, r in _EXACT.items() if not kind or r.kind == kind]
    q = Q(action__in=exact)
    for prefix, r in _PREFIXES.items():
        if not kind or r.kind == kind:
            q |= Q(action__startswith=prefix)
    return q


def customer_activity(
    customer_id: int,
    *,
    kind: str = "",
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> QuerySet[AuditEntry]:
    """The customer's customer-visible entries, newest first (lazy: slice it to a page)."""
    qs = AuditEntry.objects.filter(
        _visible_q(kind if kind in KINDS else ""), customer_id=customer_id
    )
    if date_from:
        qs = qs.filter(created_at__date__gte=date_from)
    if date_to:
        qs = qs.filter(created_at__date__lte=date_to)
    return qs.select_related("actor").order_by("-created_at", "-id")


@dataclass(frozen=True)
class Activity:
    when: datetime.datetime
    kind: str
    kind_label: str
    text: str
    extra: dict[str, Any] = field(default_factory=dict)
    entry_id: int | None = None  # the audit entry's id: the API's cursor


def actor_phrase(entry: AuditEntry) -> str:
    """ " by <e-mail>" for a customer's own person, " by our billing team" for staff, and
    nothing for the system (billing run, payment provider, reminders)."""
    if entry.actor_id is None or entry.actor is None:
        return ""
    if entry.actor.is_staff:
        return gettext(" by our billing team")
    return gettext(" by %(person)s") % {"person": entry.actor.get_username()}


def describe(entries: Iterable[AuditEntry]) -> list[Activity]:
    """Each entry as its registered sentence. Costs one query per registered loader."""
    entries = list(entries)
    loaded: dict[str, Any] = {}
    for loader in _LOADERS:
        loaded.update(loader(entries))
    out = []
    for entry in entries:
        registered = _registered(entry.action)
        if registered is None:  # not customer-visible: never shown, whatever asked
            continue
        out.append(
            Activity(
                when=entry.created_at,
                kind=registered.kind,
                kind_label=str(KINDS[registered.kind]),
                text=registered.sentence(entry, loaded),
                entry_id=entry.pk,
            )
        )
    return out


def date_text(value: Any) -> str:
    """An entry's date (stored as ISO text) as the active language writes it:
    "15 Jun 2026" / "15.06.2026". A value that is not a date is shown as it is."""
    if isinstance(value, datetime.date):
        return l10n.date(value)
    try:
        return l10n.date(datetime.datetime.fromisoformat(str(value)))
    except (TypeError, ValueError):
        return str(value or "")


def money_text(value: Any, currency: str = "") -> str:
    """An entry's amount (stored as text) as the active language writes money:
    "€1,070.96" / "1.070,96 €"; without a currency, the number alone."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, TypeError, ValueError):
        return str(value or "")
    return l10n.money(number, currency) if currency else l10n.amount(number)
