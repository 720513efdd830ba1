"""Template filters that apply the model's own rules, so templates never restate them."""

import datetime

from django import template

from billing.invoices.models import Invoice

register = template.Library()


@register.filter
def overdue_on(invoice: Invoice, today: datetime.date) -> bool:
    return invoice.is_overdue(today)
