"""Which tax applies to a customer, and the tax arithmetic.

The rules (recorded in docs/decisions.md):
- customer in the seller's own country: that country's VAT, business or not;
- business customer in another EU country whose VAT id passes stdnum's checks for that
  country (and, while VIES_ENABLED is on, whose last VIES answer for it was "valid"):
  reverse charge, 0 %;
- any other customer in another EU country: VAT of the customer's country (OSS);
- customer in India: GST at the Indian rate (IGST, an inter-state supply);
- anywhere else: no VAT, the service is supplied outside the EU.
Rates live in the TaxRate table, so a rate change is data, not a deploy.
"""

import datetime
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from billing.invoices.models import TaxRate
from contracts.models import EU_COUNTRIES, Customer
from contracts.taxids import country_name, is_valid_eu_vat
from core.errors import DomainError
from core.money import ZERO, quantize

# Stored on invoices in English; documents translate them when they print them.
REVERSE_CHARGE_NOTE = gettext_noop(
    "Reverse charge: VAT to be accounted for by the recipient "
    "(Art. 196 Council Directive 2006/112/EC)."
)
OUTSIDE_EU_NOTE = gettext_noop("Not subject to VAT: place of supply is outside the EU.")
# Tax names are data (TaxRate.name); the ones in use are translated on documents.
TAX_NAMES = (gettext_noop("VAT"), gettext_noop("IGST"))


@dataclass(frozen=True)
class TaxDecision:
    name: str
    rate: Decimal
    note: str = ""


@dataclass(frozen=True)
class VatCategory:
    """The EN 16931 VAT category (UNCL 5305) of a supply and, for an exempt one, its reason."""

    code: str
    exemption_code: str = ""  # VATEX code list
    exemption_reason: str = ""


STANDARD_RATED = VatCategory("S")
REVERSE_CHARGE = VatCategory("AE", "VATEX-EU-AE", REVERSE_CHARGE_NOTE)
NOT_SUBJECT = VatCategory("O", "VATEX-EU-O", OUTSIDE_EU_NOTE)


def vat_category_of(tax_note: str) -> VatCategory:
    """The category of an issued invoice, from the rule tax_for applied to it (its note):
    an e-invoice says what the invoice charged, never what today's data would decide.
    India's IGST is charged at its rate, so it is S in EN 16931 terms (docs/decisions.md)."""
    return {REVERSE_CHARGE_NOTE: REVERSE_CHARGE, OUTSIDE_EU_NOTE: NOT_SUBJECT}.get(
        tax_note, STANDARD_RATED
    )


class RatesOn:
    """Every rate in force on a day, read in one query (the billing run taxes a whole chunk
    of customers with it instead of one query per invoice). The same rule as a single
    lookup: per country, the newest rate whose valid_from is not after the day."""

    def __init__(self, on: datetime.date) -> None:
        self.on = on
        self._by_country: dict[str, TaxRate] = {}
        for rate in TaxRate.objects.filter(valid_from__lte=on).order_by("country", "-valid_from"):
            self._by_country.setdefault(rate.country, rate)

    def get(self, country: str) -> TaxRate | None:
        return self._by_country.get(country)


def _rate_in(country: str, on: datetime.date, rates: RatesOn | None = None) -> TaxRate:
    if rates is not None:
        assert rates.on == on, "rates read for another day"
        rate = rates.get(country)
    else:
        rate = (
            TaxRate.objects.filter(country=country, valid_from__lte=on)
            .order_by("-valid_from")
            .first()
        )
    if rate is None:
        raise DomainError(
            f"No tax rate is configured for {country} on {on}; add one in admin.", code="tax_rate"
        )
    return rate


def reverse_charge_applies(
    *, country: str, tax_id: str, is_business: bool = True, vies_confirmed: bool = False
) -> bool:
    """An EU business abroad with a VAT id that passed validation (and VIES, when on)."""
    country = country.upper()
    if country not in EU_COUNTRIES or country == settings.SELLER["country"] or not is_business:
        return False
    if not is_valid_eu_vat(country=country, tax_id=tax_id):
        return False
    return vies_confirmed or not settings.VIES_ENABLED


def tax_for(
    *,
    country: str,
    tax_id: str,
    on: datetime.date,
    is_business: bool = True,
    vies_confirmed: bool = False,
    rates: RatesOn | None = None,
) -> TaxDecision:
    seller_country = settings.SELLER["country"]
    country = country.upper()
    if reverse_charge_applies(
        country=country, tax_id=tax_id, is_business=is_business, vies_confirmed=vies_confirmed
    ):
        return TaxDecision("VAT", ZERO, REVERSE_CHARGE_NOTE)
    if country in EU_COUNTRIES or country == seller_country:
        rate = _rate_in(country, on, rates)
        return TaxDecision(rate.name, rate.rate)
    if country == "IN":
        rate = _rate_in("IN", on, rates)
        return TaxDecision(rate.name, rate.rate)
    return TaxDecision("VAT", ZERO, OUTSIDE_EU_NOTE)


def tax_for_customer(
    customer: Customer, *, on: datetime.date, rates: RatesOn | None = None
) -> TaxDecision:
    return tax_for(
        country=customer.country,
        tax_id=customer.tax_id,
        on=on,
        is_business=customer.is_business,
        vies_confirmed=customer.vies_confirmed,
        rates=rates,
    )


def billing_details_problem(
    *, country: str, tax_id: str, is_business: bool, on: datetime.date
) -> str | None:
    """Why invoices could not be finalised for these details, or None.

    Judged as if VIES had not confirmed the VAT id: an outage or a "not valid" from VIES
    then falls back to the country's VAT rate, which must exist.
    """
    try:
        tax_for(country=country, tax_id=tax_id, on=on, is_business=is_business)
    except DomainError:
        # Translated here, when the check runs: the answer goes straight onto the billing
        # details page, in the language that page is read in (country name included).
        return _(
            "We cannot invoice customers in %(country)s yet: no tax rate is set up for it. "
            "Please contact us."
        ) % {"country": country_name(country)}
    return None


@dataclass(frozen=True)
class TaxGroup:
    name: str
    rate: Decimal
    taxable_amount: Decimal
    amount: Decimal
    note: str


def tax_breakdown(
    lines: Iterable[tuple[Decimal, Decimal]], decision: TaxDecision
) -> list[TaxGroup]:
    """Sum net line amounts per rate, then round the tax once per rate (half up)."""
    per_rate: dict[Decimal, Decimal] = defaultdict(lambda: ZERO)
    for amount, rate in lines:
        per_rate[rate] += amount
    return [
        TaxGroup(decision.name, rate, quantize(net), quantize(net * rate / 100), decision.note)
        for rate, net in sorted(per_rate.items(), reverse=True)
    ]
