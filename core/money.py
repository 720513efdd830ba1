"""Money arithmetic in one place.

Amounts are Decimal with two places in the database and integer minor units
towards payment providers. Rounding is ROUND_HALF_UP ("commercial rounding"),
applied per line amount and per tax-rate group; see docs/decisions.md.
"""

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from core.errors import DomainError

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def quantize(amount: Decimal) -> Decimal:
    return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


def to_minor_units(amount: Decimal) -> int:
    """Decimal major units -> integer minor units (every supported currency has 2)."""
    return int((quantize(amount) * 100).to_integral_value())


def from_minor_units(amount: int) -> Decimal:
    return quantize(Decimal(amount) / 100)


def normalize_currency(code: str) -> str:
    currency = (code or "").strip().upper()
    if currency not in settings.SUPPORTED_CURRENCIES:
        allowed = ", ".join(settings.SUPPORTED_CURRENCIES)
        raise DomainError(f"Unknown currency {code!r}; use one of {allowed}.", code="currency")
    return currency


def format_money(amount: Decimal, currency: str) -> str:
    return f"{quantize(amount):,.2f} {currency}"
