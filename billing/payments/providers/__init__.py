"""Payment providers behind one interface; provider_for_invoice picks the one for an invoice."""

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
    "provider_for_currency",
    "provider_for_invoice",
]

# Currencies Razorpay collects for us (UPI, net banking, cards, wallets): rupee invoices.
RAZORPAY_CURRENCIES = frozenset({"INR"})


def provider_for_currency(currency: str) -> str:
    """The provider that serves Pay online for an invoice in `currency`: the one rule.

    Rupee invoices go to Razorpay once its key is configured (RAZORPAY_KEY_ID); without
    it they stay with PAYMENT_PROVIDER like every other currency (the sandbox in
    development, which simulates UPI and net banking for them; Stripe, which takes INR
    cards, in a deployment that has no Razorpay account).
    """
    if currency.upper() in RAZORPAY_CURRENCIES and settings.RAZORPAY_KEY_ID:
        return "razorpay"
    return settings.PAYMENT_PROVIDER


def provider_for_invoice(invoice) -> str:
    return provider_for_currency(invoice.currency)


def get_provider(name: str | None = None) -> PaymentProvider:
    name = name or settings.PAYMENT_PROVIDER
    if name == "stripe":
        from .stripe_provider import StripeProvider

        return StripeProvider()
    if name == "razorpay":
        from .razorpay_provider import RazorpayProvider

        return RazorpayProvider()
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
