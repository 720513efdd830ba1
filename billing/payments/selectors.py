"""Reads of saved payment methods: which method charges an invoice or a contract, and the
methods with the contracts that use them (payment methods page, API)."""

from django.conf import settings
from django.db.models import Prefetch, QuerySet

from billing.invoices.models import Invoice

from .models import ContractPaymentMethod, PaymentMethod


def method_for_contract(*, customer_id: int, contract_id: int | None) -> PaymentMethod | None:
    """The method automatic charges of the contract use: the contract's own when it names
    one (of the configured provider), else the customer's default; None when neither."""
    if contract_id is not None:
        link = (
            ContractPaymentMethod.objects.select_related("method")
            .filter(contract_id=contract_id, method__provider=settings.PAYMENT_PROVIDER)
            .first()
        )
        if link is not None:
            return link.method
    return PaymentMethod.objects.filter(
        customer_id=customer_id, provider=settings.PAYMENT_PROVIDER, is_default=True
    ).first()


def method_for_invoice(invoice: Invoice) -> PaymentMethod | None:
    return method_for_contract(customer_id=invoice.customer_id, contract_id=invoice.contract_id)


def methods_with_contracts(customer_id: int, *, provider: str | None = None) -> QuerySet:
    """The customer's methods, each with `contract_links` (and their contracts) prefetched:
    two queries more, however many methods and contracts."""
    qs = PaymentMethod.objects.filter(customer_id=customer_id)
    if provider is not None:
        qs = qs.filter(provider=provider)
    return qs.prefetch_related(
        Prefetch(
            "contract_links",
            queryset=ContractPaymentMethod.objects.select_related("contract").order_by(
                "contract_id"
            ),
        )
    )
