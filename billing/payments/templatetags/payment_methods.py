"""The payment method of a contract, on the contract page (contracts cannot import payments).

{% load payment_methods %}{% contract_payment_method contract as pm %}
pm.method: what charges it (None: nothing saved); pm.own: the contract names it itself;
pm.choices: the customer's methods of the configured provider, for the change form.
"""

from django import template
from django.conf import settings
from django.db.models import Exists, OuterRef

from billing.payments.models import ContractPaymentMethod, PaymentMethod

register = template.Library()


@register.simple_tag
def contract_payment_method(contract) -> dict:
    """One query: the customer's methods, each marked when this contract names it."""
    methods = list(
        PaymentMethod.objects.filter(
            customer_id=contract.customer_id, provider=settings.PAYMENT_PROVIDER
        ).annotate(
            for_contract=Exists(
                ContractPaymentMethod.objects.filter(
                    contract_id=contract.pk, method_id=OuterRef("pk")
                )
            )
        )
    )
    own = next((m for m in methods if m.for_contract), None)
    default = next((m for m in methods if m.is_default), None)
    return {"method": own or default, "own": own is not None, "choices": methods}
