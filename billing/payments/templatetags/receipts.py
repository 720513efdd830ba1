"""Receipts on pages of the apps below payments (the invoice page), which cannot import it.

{% load receipts %}{% invoice_receipts invoice payments as receipts %}
{% with receipt=p|receipt_in:receipts %}...{% endwith %}
"""

from django import template

from billing.payments import receipts as receipts_module

register = template.Library()


@register.simple_tag
def invoice_receipts(invoice, payments) -> dict:
    """{payment id: Receipt} for the invoice's payments that paid something on it."""
    return {r.payment.pk: r for r in receipts_module.invoice_receipts(invoice, list(payments))}


@register.filter
def receipt_in(payment, receipts: dict):
    return receipts.get(payment.pk)
