"""Reads for the contract pages, scoped to one customer, in a fixed number of queries."""

from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404

from billing.models import Invoice

from .models import AssignmentRequest, Customer, LeaseContract, RdnsDelegation, ResourceStatus


def contracts_of(customer: Customer) -> QuerySet[LeaseContract]:
    return LeaseContract.objects.filter(customer=customer)


def contract_list(customer: Customer) -> QuerySet[LeaseContract]:
    return (
        contracts_of(customer)
        .annotate(
            block_count=Count("blocks", distinct=True),
            live_assignments=Count(
                "assignment_requests",
                filter=Q(assignment_requests__status=ResourceStatus.ACTIVE),
                distinct=True,
            ),
            live_rdns=Count(
                "rdns_delegations",
                filter=Q(rdns_delegations__status=ResourceStatus.ACTIVE),
                distinct=True,
            ),
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
            Prefetch(
                "invoices",
                queryset=Invoice.objects.filter(customer=customer).order_by("-period_start", "-id"),
            ),
        )
        .filter(pk=pk)
        .first()
    )
    if contract is None:
        raise Http404("No such contract.")
    return contract
