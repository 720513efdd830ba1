"""Template filters that apply the model's own rules, so templates never restate them."""

import datetime

from django import template

from billing.invoices.documents.content import credit_line_description, line_description
from billing.invoices.models import Invoice

register = template.Library()


@register.filter
def overdue_on(invoice: Invoice, today: datetime.date) -> bool:
    return invoice.is_overdue(today)


@register.filter
def line_text(line) -> str:
    """An invoice line as the documents write it, in the active language (a lease line is
    re-rendered with its period as the language writes it); any other line as it was written."""
    return line_description(line)


@register.filter
def credit_line_text(line) -> str:
    return credit_line_description(line)
