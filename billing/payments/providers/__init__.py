"""Payment providers behind one interface; settings.PAYMENT_PROVIDER picks one."""

from django.conf import settings

from .base import (
    AuthenticationRequired,
    CardDeclined,
    PaymentError,
    PaymentProvider,
    ProviderBusy,
    ProviderUnavailable,
)

__all__ = [
    "AuthenticationRequired",
    "CardDeclined",
    "PaymentError",
    "PaymentProvider",
    "ProviderBusy",
    "ProviderUnavailable",
    "get_provider",
    "known_customer_ref",
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


def known_customer_ref(*, provider: str, customer) -> str:
    """The customer's id at `provider` as stored here, without building a client or calling out."""
    if provider == "stripe":
        from .stripe_provider import StripeProvider

        return StripeProvider.known_customer_ref(customer=customer)
    if provider == "sandbox":
        from .sandbox import SandboxProvider

        return SandboxProvider.known_customer_ref(customer=customer)
    return ""
