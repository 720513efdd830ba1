"""Template filters over core.l10n, in the active language (documents and e-mails)."""

from django import template

from core import l10n

register = template.Library()


@register.filter
def money(value, currency: str) -> str:
    return "" if value is None else l10n.money(value, currency)


@register.filter
def amount(value) -> str:
    return "" if value is None else l10n.amount(value)


@register.filter
def qty(value) -> str:
    return "" if value is None else l10n.quantity(value)


@register.filter
def percent(value) -> str:
    return "" if value is None else l10n.percent(value)


@register.filter
def ldate(value) -> str:
    return "" if value is None else l10n.date(value)


@register.filter
def ldate_long(value) -> str:
    return "" if value is None else l10n.date(value, length="long")


@register.filter
def country(code: str) -> str:
    return l10n.country_name(code)


@register.simple_tag
def period(start, end) -> str:
    return l10n.period(start, end)
