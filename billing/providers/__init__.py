"""Payment providers behind one interface; settings.PAYMENT_PROVIDER picks one."""

from django.conf import settings

from .base import (
    AuthenticationRequired,
    CardDeclined,
    PaymentError,
    PaymentProvider,
    ProviderUnavailable,
)

__all__ = [
    "AuthenticationRequired",
    "CardDeclined",
    "PaymentError",
    "PaymentProvider",
    "ProviderUnavailable",
    "get_provider",
]


def get_provider(name: str | None = None) -> PaymentProvider:
    name = name or settings.PAYMENT_PROVIDER
    if name == "stripe":
        from .stripe_provider import StripeProvider

        return StripeProvider()
    if name == "sandbox":
        from .sandbox import SandboxProvider, sandbox_allowed

        if not sandbox_allowed():
            raise ProviderUnavailable(
                "Online payment is switched off here (the test-mode provider is not allowed)."
            )
        return SandboxProvider()
    raise ProviderUnavailable("Online payment is not configured.")
