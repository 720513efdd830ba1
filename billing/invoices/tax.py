"""Which tax applies to a customer, and the tax arithmetic.

The rules (recorded in docs/decisions.md):
- customer in the seller's own country: that country's VAT, business or not;
- customer in another EU country with a VAT id (a business): reverse charge, 0 %;
- customer in another EU country without a VAT id: VAT of the customer's country (OSS);
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
from django.utils.translation import gettext_noop

from billing.invoices.models import TaxRate
from contracts.models import EU_COUNTRIES
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


def vat_category(*, country: str, tax_id: str) -> VatCategory:
    """Which rule of the module docstring applies. India's IGST is charged at its rate, so
    it is S in EN 16931 terms (see docs/decisions.md, issue 15)."""
    seller_country = settings.SELLER["country"]
    country = country.upper()
    if country in EU_COUNTRIES and country != seller_country and tax_id.strip():
        return REVERSE_CHARGE
    if country in EU_COUNTRIES or country == seller_country or country == "IN":
        return STANDARD_RATED
    return NOT_SUBJECT


def _rate_in(country: str, on: datetime.date) -> TaxRate:
    rate = (
        TaxRate.objects.filter(country=country, valid_from__lte=on).order_by("-valid_from").first()
    )
    if rate is None:
        raise DomainError(
            f"No tax rate is configured for {country} on {on}; add one in admin.", code="tax_rate"
        )
    return rate


def tax_for(*, country: str, tax_id: str, on: datetime.date) -> TaxDecision:
    category = vat_category(country=country, tax_id=tax_id)
    if category.code != STANDARD_RATED.code:
        return TaxDecision("VAT", ZERO, category.exemption_reason)
    rate = _rate_in(country.upper(), on)
    return TaxDecision(rate.name, rate.rate)


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
