"""Reads for the contract pages, scoped to one customer, in a fixed number of queries."""

from django.db.models import Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404

from .models import AssignmentRequest, Customer, LeaseContract, RdnsDelegation, ResourceStatus


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
