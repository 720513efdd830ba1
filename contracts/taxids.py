"""Tax ids checked with python-stdnum: EU VAT numbers, Indian GSTINs, and the national
VAT-like numbers stdnum knows for other countries.

`tax_id_clean` is the one place that says whether an id is acceptable for a billing
country; the billing details form, admin and the tax decision all call it, so an id
that fails here never turns on reverse charge.
"""

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from stdnum import exceptions as stdnum_errors
from stdnum import get_cc_module
from stdnum.eu import vat as eu_vat
from stdnum.in_ import gstin
from stdnum.util import clean

from core.l10n import babel_locale

from .models import EU_COUNTRIES

# VAT numbers carry their country's code, except Greece's, which carries EL.
VAT_PREFIX = {cc: cc for cc in EU_COUNTRIES} | {"GR": "EL"}
_PREFIX_COUNTRY = {prefix: cc for cc, prefix in VAT_PREFIX.items()}


# Codes Babel names that are regions or placeholders, not countries.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "ZZ", "XA", "XB"})  # XA, XB: pseudo-locales


def country_name(code: str) -> str:
    """Name of an ISO 3166 country code in the active language ("Germany", "Deutschland");
    the code itself when it names none."""
    code = code.upper()
    if code in _NOT_COUNTRIES or len(code) != 2 or not code.isalpha():
        return code
    return babel_locale().territories.get(code, code)


def _sort_key(name: str) -> str:
    # "Österreich" sorts with the O's, as a German reader looks for it, not after "Zypern".
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()


def country_choices() -> list[tuple[str, str]]:
    """Every country, named and sorted in the active language (the page's)."""
    names = babel_locale().territories
    return sorted(
        (
            (code, names[code])
            for code in names
            if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
        ),
        key=lambda item: _sort_key(item[1]),
    )


def _problem(error: stdnum_errors.ValidationError, what: str, number: str) -> str:
    values = {"number": number, "what": what}
    if isinstance(error, stdnum_errors.InvalidLength):
        return _("%(number)s has the wrong number of characters for %(what)s.") % values
    if isinstance(error, stdnum_errors.InvalidChecksum):
        return (
            _("%(number)s is not a valid %(what)s: its check digit does not match (a typo?).")
            % values
        )
    if isinstance(error, stdnum_errors.InvalidFormat):
        return _("%(number)s is not in the format of %(what)s.") % values
    return _("%(number)s is not a valid %(what)s: a part of it is not one that is issued.") % values


def _eu_vat(country: str, raw: str) -> str:
    name = country_name(country)
    number = clean(raw, " -./,").upper()
    if number[:2].isdigit():
        # People often leave out the prefix; the billing country says which one it is.
        number = VAT_PREFIX[country] + number
    prefix = number[:2]
    if country == "GR" and prefix == "GR":
        raise ValidationError(
            _("Greek VAT numbers start with EL, not GR: write %(number)s.")
            % {"number": f"EL{number[2:]}"},
            code="prefix",
        )
    if prefix != VAT_PREFIX[country]:
        other = _PREFIX_COUNTRY.get(prefix)
        if other:
            raise ValidationError(
                _(
                    "%(number)s is a VAT number from %(other)s, but the billing country is "
                    "%(country)s. Enter a VAT number from %(country)s (starting with "
                    "%(prefix)s) or change the country."
                )
                % {
                    "number": number,
                    "other": country_name(other),
                    "country": name,
                    "prefix": VAT_PREFIX[country],
                },
                code="foreign",
            )
        raise ValidationError(
            _("%(number)s is not a VAT number: VAT numbers from %(country)s start with %(prefix)s.")
            % {"number": raw, "country": name, "prefix": VAT_PREFIX[country]},
            code="prefix",
        )
    try:
        return eu_vat.validate(number)
    except stdnum_errors.ValidationError as exc:
        what = _("%(country)s VAT number") % {"country": name}
        raise ValidationError(_problem(exc, what, number), code="invalid") from None


def _gstin(raw: str) -> str:
    number = gstin.compact(raw)
    try:
        return gstin.validate(number)
    except stdnum_errors.InvalidComponent:
        # stdnum reports every bad part alike; the state code is the one people get wrong.
        if len(number) >= 2 and number[:2] not in gstin._STATE_CODES:
            raise ValidationError(
                _(
                    "%(number)s is not a valid GSTIN: %(state)s is not an Indian state code "
                    "(the first two digits, e.g. 27 for Maharashtra)."
                )
                % {"number": number, "state": number[:2]},
                code="state",
            ) from None
        raise ValidationError(
            _(
                "%(number)s is not a valid GSTIN: characters 13-14 must be the registration "
                "number and Z."
            )
            % {"number": number},
            code="invalid",
        ) from None
    except stdnum_errors.ValidationError as exc:
        raise ValidationError(_problem(exc, _("GSTIN"), number), code="invalid") from None


def tax_id_clean(*, country: str, tax_id: str) -> str:
    """The tax id in its compact form, or a ValidationError naming what is wrong.

    An empty id is fine (a consumer, or a business that has none yet).
    """
    raw = (tax_id or "").strip()
    country = (country or "").upper()
    if not raw:
        return ""
    if country in EU_COUNTRIES:
        return _eu_vat(country, raw)
    if country == "IN":
        return _gstin(raw)
    module = get_cc_module(country.lower(), "vat") if len(country) == 2 else None
    if module is None:
        if len(raw) > 32:
            raise ValidationError(_("A tax id has at most 32 characters."), code="length")
        return raw
    number = module.compact(raw)
    try:
        return module.validate(number)
    except stdnum_errors.ValidationError as exc:
        what = _("%(country)s tax id") % {"country": country_name(country)}
        raise ValidationError(_problem(exc, what, number), code="invalid") from None


def is_valid_eu_vat(*, country: str, tax_id: str) -> bool:
    """True when `tax_id` is a VAT number of the EU country `country` that passes stdnum."""
    if country.upper() not in EU_COUNTRIES or not (tax_id or "").strip():
        return False
    try:
        tax_id_clean(country=country, tax_id=tax_id)
    except ValidationError:
        return False
    return True
