"""Money, dates and country names as a language writes them (Babel's CLDR data).

Django's own l10n formats numbers but not currencies ("1.070,96 €" vs "€1,070.96"),
and knows no country names; Babel has both. Every function takes the language code
explicitly or uses the active one, so a document rendered inside
`translation.override(lang)` is formatted for `lang` throughout.
"""

import datetime
from decimal import Decimal
from functools import cache

from babel import Locale
from babel.dates import format_date as _format_date
from babel.dates import format_interval
from babel.numbers import format_currency, format_decimal
from django.conf import settings
from django.utils import translation

# English documents go to customers across Europe and beyond: British English writes
# dates day-first with the month in words ("1 Mar 2026"), which no reader misreads.
_BABEL_LOCALES = {"en": "en_GB", "de": "de_DE"}
# A period as each language writes it compactly: "28 Sept - 27 Oct 2026", "28.09. - 27.10.2026"
# (with an en dash between thin spaces).
_PERIOD_SKELETONS = {"en": "yMMMd", "de": "yMMdd"}


def portal_language(code: str | None) -> str:
    """`code` when the portal speaks it (settings.LANGUAGES), else the default language:
    what a customer's documents and e-mails are written in, from their document language."""
    return code if code in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


@cache
def _parsed(code: str) -> Locale:
    return Locale.parse(_BABEL_LOCALES.get(code, "en_GB"))


def babel_locale(language: str | None = None) -> Locale:
    """The Babel locale of `language`, or of the active language when none is given."""
    return _parsed((language or translation.get_language() or "en").split("-")[0].lower())


def money(amount: Decimal, currency: str, language: str | None = None) -> str:
    """1070.96 EUR -> "€1,070.96" (en) or "1.070,96 €" (de)."""
    return format_currency(amount, currency.upper(), locale=babel_locale(language))


def amount(value: Decimal, language: str | None = None) -> str:
    """An amount without its currency, always with two decimals: "1,070.96" / "1.070,96"."""
    return format_decimal(value, format="#,##0.00", locale=babel_locale(language))


def quantity(value: Decimal, language: str | None = None) -> str:
    """A quantity with only the decimals it needs: "1", "1.5" / "1,5"."""
    return format_decimal(value, format="#,##0.##", locale=babel_locale(language))


def percent(value: Decimal, language: str | None = None) -> str:
    """A rate held in percent (19.00) as the language writes it: "19%" / "19 %"."""
    return format_decimal(value, format="#,##0.##", locale=babel_locale(language)) + (
        "\u00a0%" if babel_locale(language).language == "de" else "%"
    )


def date(
    value: datetime.date | datetime.datetime, language: str | None = None, length: str = "medium"
) -> str:
    """ "1 Mar 2026" (en) or "01.03.2026" (de); length "long": "1 March 2026", "1. März 2026"."""
    if isinstance(value, datetime.datetime):
        value = value.date()
    return _format_date(value, format=length, locale=babel_locale(language))


def country_name(code: str, language: str | None = None) -> str:
    """DE -> "Germany" / "Deutschland"; an unknown code is returned as it is."""
    code = (code or "").upper()
    return babel_locale(language).territories.get(code, code)


def period(start: datetime.date, end: datetime.date, language: str | None = None) -> str:
    """A date range, the year written once when both ends share it."""
    locale = babel_locale(language)
    skeleton = _PERIOD_SKELETONS.get(locale.language, "yMMMd")
    return format_interval(start, end, skeleton, locale=locale)
