"""Reads for billing pages. Every customer-facing read is scoped to one customer."""

from django.db.models import QuerySet
from django.http import Http404

from contracts.models import Customer

from .models import DRAFT_REF_PREFIX, Invoice


def invoices_of(customer: Customer) -> QuerySet[Invoice]:
    return Invoice.objects.filter(customer=customer)


def invoice_for_customer_or_404(customer: Customer, ref: str) -> Invoice:
    """The customer's invoice named by `ref` (number or draft-<id>).

    Another customer's invoice answers exactly like one that does not exist.
    """
    qs = invoices_of(customer).select_related("customer", "contract")
    if ref.startswith(DRAFT_REF_PREFIX):
        pk = ref.removeprefix(DRAFT_REF_PREFIX)
        invoice = qs.filter(pk=int(pk), number__isnull=True).first() if pk.isdigit() else None
    else:
        invoice = qs.filter(number=ref).first()
    if invoice is None:
        raise Http404("No such invoice.")
    return invoice
