"""Reads for the contract pages, scoped to one customer, in a fixed number of queries."""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db.models import (
    Count,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.models import AuditEntry

from .models import (
    EU_COUNTRIES,
    AssignmentRequest,
    Customer,
    DocumentLanguage,
    LeaseContract,
    RdnsDelegation,
    ResourceStatus,
)
from .taxids import country_name

# The order fields are listed in on the page and in the history.
CUSTOMER_FIELD_ORDER = (
    "name",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "state",
    "country",
    "email",
    "billing_cc_emails",
    "purchase_order_reference",
    "buyer_reference",
    "tax_id",
    "document_language",
    "phone",
    "is_business",
    "default_currency",
)


def contracts_of(customer: Customer) -> QuerySet[LeaseContract]:
    return LeaseContract.objects.filter(customer=customer)


def _live_count(model) -> Subquery:
    """Live rows of `model` per contract, as its own subquery: counting through joins would
    multiply blocks by assignments by delegations."""
    return Subquery(
        model.objects.filter(contract=OuterRef("pk"), status=ResourceStatus.ACTIVE)
        .order_by()
        .values("contract")
        .annotate(n=Count("pk"))
        .values("n"),
        output_field=IntegerField(),
    )


def contract_list(customer: Customer) -> QuerySet[LeaseContract]:
    return (
        contracts_of(customer)
        .annotate(
            live_assignments=Coalesce(_live_count(AssignmentRequest), 0),
            live_rdns=Coalesce(_live_count(RdnsDelegation), 0),
        )
        .prefetch_related("blocks")
        .order_by("-started_on", "-id")
    )


def contract_detail(customer: Customer, pk: int) -> LeaseContract:
    """Another customer's contract answers exactly like one that does not exist."""
    contract = (
        contracts_of(customer)
        .prefetch_related(
            "blocks",
            Prefetch(
                "assignment_requests",
                queryset=AssignmentRequest.objects.select_related("block").order_by(
                    "status", "block__first_address", "id"
                ),
            ),
            Prefetch(
                "rdns_delegations",
                queryset=RdnsDelegation.objects.select_related("block").order_by(
                    "status", "block__first_address", "id"
                ),
            ),
            # By relation name: the invoices app depends on contracts, never the reverse.
            "invoices",
        )
        .filter(pk=pk)
        .first()
    )
    if contract is None:
        raise Http404("No such contract.")
    return contract


# --- Billing details ----------------------------------------------------------------

DETAILS_ACTIONS = ("customer.created", "customer.details_changed")


@dataclass(frozen=True)
class FieldChange:
    label: str
    before: str
    after: str


@dataclass(frozen=True)
class DetailsChange:
    at: datetime.datetime
    by: str
    changes: list[FieldChange]


def _shown(field_name: str, value) -> str:
    if value in (None, "", []):
        return "—"
    if field_name == "billing_cc_emails":
        return ", ".join(value)
    if field_name == "country":
        return f"{country_name(value)} ({value})"
    if field_name == "document_language":
        return DocumentLanguage(value).label if value in DocumentLanguage.values else value
    if field_name == "is_business":
        return gettext("yes") if value else gettext("no")
    return str(value)


# As the page labels them (the model's verbose names are admin's).
_LABELS = {
    "name": _("Legal name"),
    "address_line1": _("Address"),
    "address_line2": _("Address (line 2)"),
    "postal_code": _("Postal code"),
    "city": _("City"),
    "state": _("State or region"),
    "country": _("Country"),
    "email": _("Billing e-mail"),
    "billing_cc_emails": _("Further billing e-mails"),
    "purchase_order_reference": _("Purchase order reference"),
    "tax_id": _("VAT id or GSTIN"),
    "buyer_reference": _("Buyer reference (Leitweg-ID)"),
    "document_language": _("Language of documents"),
    "phone": _("Phone"),
    "is_business": _("Business customer"),
    "default_currency": _("Default currency"),
}


def details_field_label(field_name: str) -> str:
    """How the Billing details page names a customer field (the activity page too)."""
    return _label(field_name)


def _label(field_name: str) -> str:
    if field_name in _LABELS:
        return str(_LABELS[field_name])
    try:
        label = str(Customer._meta.get_field(field_name).verbose_name)
    except FieldDoesNotExist:
        label = field_name.replace("_", " ")
    return label[:1].upper() + label[1:]


def billing_details_history(customer: Customer, *, limit: int = 50) -> list[DetailsChange]:
    """The customer's billing-details changes, newest first, in one query.

    Staff appear as "Staff": customers see that we changed something, not who of us.
    """
    entries = (
        AuditEntry.objects.filter(customer=customer, action__in=DETAILS_ACTIONS)
        .select_related("actor")
        .order_by("-created_at", "-id")[:limit]
    )
    history = []
    for entry in entries:
        by = gettext("Staff") if entry.actor and entry.actor.is_staff else entry.actor_label
        fields = [f for f in CUSTOMER_FIELD_ORDER if f in entry.before or f in entry.after]
        history.append(
            DetailsChange(
                at=entry.created_at,
                by=by,
                changes=[
                    FieldChange(
                        _label(f), _shown(f, entry.before.get(f)), _shown(f, entry.after.get(f))
                    )
                    for f in fields
                ],
            )
        )
    return history


def customers_due_for_vies(*, now: datetime.datetime | None = None) -> QuerySet:
    """Ids of EU customers whose VAT id VIES has not answered for, failed on, or answered
    for more than VIES_RECHECK_DAYS ago. Empty while VIES is switched off."""
    if not settings.VIES_ENABLED:
        return Customer.objects.none().values_list("pk", flat=True)
    now = now or timezone.now()
    stale = now - datetime.timedelta(days=settings.VIES_RECHECK_DAYS)
    return (
        Customer.objects.filter(country__in=EU_COUNTRIES)
        .exclude(tax_id="")
        .filter(
            ~Q(vies_tax_id=F("tax_id"))
            | ~Q(vies_error="")
            | Q(vies_checked_at__isnull=True)
            | Q(vies_checked_at__lt=stale)
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
