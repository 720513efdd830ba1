"""Template filters that apply the model's own rules, so templates never restate them."""

import datetime

from django import template
from django.utils.safestring import mark_safe

from billing.invoices.documents.content import credit_line_description, line_description
from billing.invoices.models import Invoice

register = template.Library()


@register.filter
def overdue_on(invoice: Invoice, today: datetime.date) -> bool:
    return invoice.is_overdue(today)


class ListBodyNode(template.Node):
    def __init__(self, nodelist: template.NodeList):
        self.nodelist = nodelist

    def render(self, context) -> str:
        body = context.get("body")
        if body is not None and body.html is not None:
            return mark_safe(body.html)  # noqa: S308 - rendered (and escaped) by this node earlier
        html = self.nodelist.render(context)
        if body is not None:
            body.store(html)
        return html


@register.tag
def list_body(parser, token):
    """{% list_body %}...{% endlist_body %}: the invoice list's body, from the cache when
    the view found it there (context `body`, billing.invoices.list_cache.ListBody), else
    rendered and handed to the cache."""
    nodelist = parser.parse(("endlist_body",))
    parser.delete_first_token()
    return ListBodyNode(nodelist)


@register.filter
def line_text(line) -> str:
    """An invoice line as the documents write it, in the active language (a lease line is
    re-rendered with its period as the language writes it); any other line as it was written."""
    return line_description(line)


@register.filter
def credit_line_text(line) -> str:
    return credit_line_description(line)
