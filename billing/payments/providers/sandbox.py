"""The embedded test-mode provider: a checkout page inside the portal and test cards.

It never moves real money. Its checkout page and saved test cards produce the same
ProviderEvents a Stripe webhook does, and billing.payments.services applies them through the
same services. It refuses to run with DEBUG off or a live Stripe key unless
settings.SANDBOX_ALLOWED says otherwise.
"""

import secrets
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from .base import (
    AuthenticationRequired,
    CardDeclined,
    ChargeOutcome,
    CheckoutSession,
    EventKind,
    MethodInfo,
    PaymentProvider,
    ProviderEvent,
    RefundOutcome,
)

_SALT = "billing.sandbox-checkout.v1"
CUSTOMER_PREFIX = "sandbox_cus_"
# A card-setup link lives as long as a short Stripe Checkout session would, not forever.
SETUP_MAX_AGE = 60 * 60


@dataclass(frozen=True)
class TestCard:
    number: str
    brand: str
    last4: str
    behaviour: str  # success | decline | 3ds | refund_fails
    label: str


TEST_CARDS = {
    card.number: card
    for card in (
        TestCard("4242424242424242", "visa", "4242", "success", gettext_lazy("Succeeds")),
        TestCard("4000000000000002", "visa", "0002", "decline", gettext_lazy("Is declined")),
        TestCard("4000002760003184", "visa", "3184", "3ds", gettext_lazy("Asks for 3-D Secure")),
        # Stripe's test card for a refund that succeeds, then fails (refund.failed).
        TestCard(
            "4000000000005126",
            "visa",
            "5126",
            "refund_fails",
            gettext_lazy("Succeeds; refunds fail"),
        ),
    )
}
_BY_LAST4 = {card.last4: card for card in TEST_CARDS.values()}


@dataclass(frozen=True)
class TestIban:
    iban: str
    behaviour: str  # debit_succeeds | debit_fails | debit_disputed
    label: str
    bank_name: str = "Commerzbank"

    @property
    def last4(self) -> str:
        return self.iban[-4:]


# Stripe's own SEPA Direct Debit test IBANs (docs.stripe.com/testing, "SEPA Direct Debit",
# DE): the debit processes, then succeeds, fails, or succeeds and is disputed at once
# (a returned debit, reason debit_not_authorized) — here after SANDBOX_DEBIT_DELAY_SECONDS,
# run by the worker.
TEST_IBANS = {
    iban.iban: iban
    for iban in (
        TestIban(
            "DE89370400440532013000", "debit_succeeds", gettext_lazy("Processing, then succeeds")
        ),
        TestIban("DE62370400440532013001", "debit_fails", gettext_lazy("Processing, then fails")),
        TestIban(
            "DE35370400440532013002",
            "debit_disputed",
            gettext_lazy("Processing, succeeds, then returned by the bank (disputed)"),
        ),
    )
}
_IBAN_BY_LAST4 = {iban.last4: iban for iban in TEST_IBANS.values()}
# How a debit's method reads on the invoice's payments (method_brand holds 20 characters).
SEPA_BRAND = "SEPA Direct Debit"
# A debit is offered for the currencies SEPA (EUR) collects in.
DEBIT_CURRENCIES = frozenset({"EUR"})


# Rupee invoices (Razorpay's methods): UPI with Razorpay's own test VPAs, and net banking
# whose test bank page lets the payer succeed or fail. Both settle at once, like Razorpay's.
UPI_CURRENCIES = frozenset({"INR"})
UPI_BRAND = "UPI"
NETBANKING_BRAND = "Net banking"


@dataclass(frozen=True)
class TestVpa:
    vpa: str
    behaviour: str  # success | failure
    label: str


TEST_VPAS = {
    vpa.vpa: vpa
    for vpa in (
        TestVpa("success@razorpay", "success", gettext_lazy("Succeeds")),
        TestVpa("failure@razorpay", "failure", gettext_lazy("Fails")),
    )
}
TEST_BANKS = {"HDFC": "HDFC Bank", "ICIC": "ICICI Bank", "SBIN": "State Bank of India"}


def vpa_for(value: str) -> TestVpa | None:
    return TEST_VPAS.get(value.strip().lower())


def rupee_outcome_event(
    payment_id: int, *, brand: str, succeeds: bool, checkout_id: str = ""
) -> ProviderEvent:
    """A UPI or net-banking payment's outcome, as Razorpay's payment_link.paid or
    payment.failed would report it."""
    if not succeeds:
        return failure_event(
            payment_id,
            code="payment_failed",
            message=gettext("The bank declined this payment. Nothing was charged."),
        )
    return success_event(payment_id, TestCard("", brand, "", "", ""), checkout_id=checkout_id)


def iban_for(value: str) -> TestIban | None:
    return TEST_IBANS.get("".join(value.split()).upper())


def iban_for_last4(last4: str) -> TestIban | None:
    return _IBAN_BY_LAST4.get(last4)


def processing_event(payment_id: int, iban: TestIban, checkout_id: str = "") -> ProviderEvent:
    pi, _ = payment_ids(payment_id)
    return ProviderEvent(
        kind=EventKind.PAYMENT_PROCESSING,
        payment_id=payment_id,
        checkout_id=checkout_id,
        provider_payment_id=pi,
        brand=SEPA_BRAND,
        last4=iban.last4,
    )


def debit_outcome_events(payment_id: int, iban: TestIban) -> list[ProviderEvent]:
    """What the bank answers days later about a sandbox debit, in the order Stripe sends
    it: the outcome, and for the disputed IBAN the returned debit right after."""
    if iban.behaviour == "debit_fails":
        return [
            failure_event(
                payment_id,
                code="insufficient_funds",
                message="The bank returned the direct debit (insufficient funds).",
            )
        ]
    paid = success_event(payment_id, TestCard(iban.iban, SEPA_BRAND, iban.last4, "", ""))
    if iban.behaviour != "debit_disputed":
        return [paid]
    returned = ProviderEvent(
        kind=EventKind.DISPUTE_CLOSED,
        payment_id=payment_id,
        provider_payment_id=paid.provider_payment_id,
        charge_id=paid.charge_id,
        dispute_id=f"dp_sandbox_{payment_id}",
        # A returned SEPA debit (debit_not_authorized) cannot be contested: lost at once,
        # as billing.payments.providers.stripe_provider reads Stripe's.
        dispute_status="lost",
        dispute_amount=paid.amount_received,
        failure_code="debit_not_authorized",
    )
    return [paid, returned]


def sandbox_allowed() -> bool:
    if settings.SANDBOX_ALLOWED:
        return True
    return bool(settings.DEBUG) and not settings.STRIPE_SECRET_KEY.startswith("sk_live_")


def card_for_number(number: str) -> TestCard | None:
    return TEST_CARDS.get("".join(ch for ch in number if ch.isdigit()))


def card_for_last4(last4: str) -> TestCard:
    return _BY_LAST4.get(last4, TEST_CARDS["4242424242424242"])


def confirm_token_loads(token: str) -> dict | None:
    """The 3-D Secure page's token: {"a": payment id, "r": where to send the customer back}."""
    data = checkout_token_loads(token)
    return data if data and "a" in data and "r" in data else None


def checkout_token_loads(token: str) -> dict | None:
    try:
        data = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    return data if isinstance(data, dict) else None


class SetupLinkExpired(Exception):
    pass


def setup_token_loads(token: str) -> dict | None:
    """The card-setup page's token: {"cust", "s", "c"}; SetupLinkExpired past SETUP_MAX_AGE."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=SETUP_MAX_AGE)
    except signing.SignatureExpired:
        raise SetupLinkExpired from None
    except signing.BadSignature:
        return None
    return data if isinstance(data, dict) and "cust" in data else None


def payment_ids(payment_id: int) -> tuple[str, str]:
    return f"pi_sandbox_{payment_id}", f"ch_sandbox_{payment_id}"


def _taken(payment_id: int) -> tuple[Decimal, str, str]:
    """What the sandbox takes for a payment: exactly what was asked, from the invoice's customer."""
    from ..models import Payment

    payment = Payment.objects.select_related("invoice").get(pk=payment_id)
    return payment.amount, payment.currency, f"{CUSTOMER_PREFIX}{payment.invoice.customer_id}"


def success_event(
    payment_id: int,
    card: TestCard,
    checkout_id: str = "",
    *,
    amount: Decimal | None = None,
    currency: str = "",
    customer_ref: str = "",
) -> ProviderEvent:
    """The payment succeeded; amount, currency and payer default to what was asked of whom."""
    pi, charge = payment_ids(payment_id)
    asked, asked_currency, payer = _taken(payment_id)
    return ProviderEvent(
        kind=EventKind.PAYMENT_SUCCEEDED,
        payment_id=payment_id,
        checkout_id=checkout_id,
        provider_payment_id=pi,
        charge_id=charge,
        brand=card.brand,
        last4=card.last4,
        amount_received=asked if amount is None else amount,
        currency=(currency or asked_currency).upper(),
        provider_customer_id=customer_ref or payer,
    )


def failure_event(payment_id: int, *, code: str, message: str, action: bool = False):
    pi, _ = payment_ids(payment_id)
    return ProviderEvent(
        kind=EventKind.PAYMENT_REQUIRES_ACTION if action else EventKind.PAYMENT_FAILED,
        payment_id=payment_id,
        provider_payment_id=pi,
        failure_code=code,
        failure_message=message,
    )


def attach_event(customer_id: int, card: TestCard) -> ProviderEvent:
    return ProviderEvent(
        kind=EventKind.METHOD_ATTACHED,
        customer_id=customer_id,
        provider_customer_id=f"{CUSTOMER_PREFIX}{customer_id}",
        method=MethodInfo(
            id=f"pm_sandbox_{card.last4}_{secrets.token_hex(6)}",
            brand=card.brand,
            last4=card.last4,
            exp_month=12,
            exp_year=2034,
        ),
    )


def attach_iban_event(customer_id: int, iban: TestIban) -> ProviderEvent:
    """A test IBAN saved with a SEPA Direct Debit mandate accepted now (the sandbox's setup
    page shows the mandate text; billing.payments.services stores it with the method)."""
    token = secrets.token_hex(6)
    return ProviderEvent(
        kind=EventKind.METHOD_ATTACHED,
        customer_id=customer_id,
        provider_customer_id=f"{CUSTOMER_PREFIX}{customer_id}",
        method=MethodInfo(
            id=f"pm_sandbox_sepa_{iban.last4}_{token}",
            brand="",
            last4=iban.last4,
            exp_month=None,
            exp_year=None,
            type="sepa_debit",
            bank_name=iban.bank_name,
            mandate_reference=f"SANDBOX-{token.upper()}",
            mandate_id=f"mandate_sandbox_{token}",
            mandate_accepted_at=timezone.now(),
        ),
    )


class SandboxProvider(PaymentProvider):
    name = "sandbox"
    confirms_refunds_synchronously = True

    def customer_ref(self, *, customer) -> str:
        return f"{CUSTOMER_PREFIX}{customer.pk}"

    @classmethod
    def known_customer_ref(cls, *, customer) -> str:
        return f"{CUSTOMER_PREFIX}{customer.pk}"

    def checkout_create(
        self, *, payment, invoice, customer_ref, success_url, cancel_url, language=None
    ):
        token = signing.dumps(
            {"p": payment.pk, "s": success_url, "c": cancel_url}, salt=_SALT, compress=True
        )
        return CheckoutSession(
            id=f"cs_sandbox_{payment.pk}",
            url=reverse("payments:sandbox-checkout", args=[token]),
        )

    def checkout_expire(self, *, checkout_id):
        """Nothing lives outside our tables; cancelling the payment closes the page."""

    def setup_checkout_create(self, *, customer, customer_ref, success_url, cancel_url):
        token = signing.dumps(
            {"cust": customer.pk, "s": success_url, "c": cancel_url}, salt=_SALT, compress=True
        )
        return CheckoutSession(
            id=f"seti_sandbox_{customer.pk}", url=reverse("payments:sandbox-setup", args=[token])
        )

    def charge_saved_method(self, *, payment, invoice, customer_ref, method_id, off_session):
        from billing.payments.models import PaymentMethod

        method = PaymentMethod.objects.filter(provider=self.name, provider_id=method_id).first()
        if method is not None and method.is_bank:
            return self._debit_saved_iban(payment, method)
        card = card_for_last4(method.last4 if method else "0002")
        pi, charge = payment_ids(payment.pk)
        if method is None or card.behaviour == "decline":
            declined = CardDeclined(code="card_declined")
            declined.provider_payment_id = pi
            raise declined
        if card.behaviour == "3ds":
            if off_session:
                needed = AuthenticationRequired(code="authentication_required")
                needed.provider_payment_id = pi
                raise needed
            return ChargeOutcome(status="requires_action", provider_payment_id=pi)
        return ChargeOutcome(
            status="succeeded",
            provider_payment_id=pi,
            charge_id=charge,
            brand=card.brand,
            last4=card.last4,
            amount_received=payment.amount,
            currency=payment.currency.upper(),
            provider_customer_id=customer_ref,
        )

    def _debit_saved_iban(self, payment, method) -> ChargeOutcome:
        """A saved test IBAN: submitted (processing) now, settled by the worker later.

        The sandbox is its own bank, whose only state is our tables: it records the
        submission itself before it queues the bank's answer, so the answer can never
        arrive before the "processing" it follows (tests run the task at once). What it
        returns is the payment's state after that, which the caller applies as a no-op.
        """
        from billing.payments import services
        from billing.payments.tasks import sandbox_settle_debit
        from core.queue import enqueue

        iban = iban_for_last4(method.last4) or TEST_IBANS["DE89370400440532013000"]
        services.provider_event_apply(processing_event(payment.pk, iban), actor="sandbox")
        enqueue(
            sandbox_settle_debit,
            payment.pk,
            iban.iban,
            countdown=settings.SANDBOX_DEBIT_DELAY_SECONDS,
        )
        payment.refresh_from_db()
        pi, charge = payment_ids(payment.pk)
        status = {"succeeded": "succeeded", "failed": "failed", "refunded": "succeeded"}.get(
            payment.status, "processing"
        )
        return ChargeOutcome(
            status=status,
            provider_payment_id=pi,
            charge_id=charge if status == "succeeded" else "",
            brand=SEPA_BRAND,
            last4=iban.last4,
            failure_code=payment.failure_code,
            failure_message=payment.failure_message,
            amount_received=payment.amount_received,
            currency=payment.currency_received or payment.currency,
            provider_customer_id=f"{CUSTOMER_PREFIX}{payment.invoice.customer_id}",
        )

    def payment_retrieve(self, *, payment):
        # The sandbox's only state is our own tables: there is nothing to catch up on.
        return None

    def payment_confirmation(self, *, payment, return_url):
        token = signing.dumps({"a": payment.pk, "r": return_url}, salt=_SALT, compress=True)
        return ChargeOutcome(
            status="requires_action",
            provider_payment_id=payment_ids(payment.pk)[0],
            action_url=reverse("payments:sandbox-confirm", args=[token]),
        )

    def payment_cancel(self, *, payment):
        # Nothing waits outside our tables: the attempt's own status is the whole state.
        return ChargeOutcome(status="cancelled", provider_payment_id=payment_ids(payment.pk)[0])

    def refund_create(self, *, payment, amount_minor, idempotency_key, reason):
        fails = card_for_last4(payment.method_last4).behaviour == "refund_fails"
        return RefundOutcome(
            id=f"re_sandbox_{idempotency_key}",
            status="succeeded",
            amount=Decimal(amount_minor) / 100,
            fails_later="expired_or_canceled_card" if fails else "",
        )

    def methods_list(self, *, customer_ref):
        from billing.payments.models import PaymentMethod

        customer_id = int(customer_ref.removeprefix(CUSTOMER_PREFIX))
        return [
            MethodInfo(
                m.provider_id,
                m.brand,
                m.last4,
                m.exp_month,
                m.exp_year,
                type=m.type,
                bank_name=m.bank_name,
            )
            for m in PaymentMethod.objects.filter(customer_id=customer_id, provider=self.name)
        ]

    def method_detach(self, *, method_id):
        """Our PaymentMethod row is the sandbox's only record of the card."""

    def method_set_default(self, *, customer_ref, method_id):
        """Our is_default flag is the sandbox's only record of the default."""
