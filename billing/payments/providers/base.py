"""The payment provider interface and the errors every provider raises.

Providers speak in minor units and provider ids; billing.payments.services turns what they
answer (and what their webhooks say) into calls of the money services. Error
messages are written for the customer and safe to show as they are.
"""

import datetime
import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from core.errors import TransientError

if TYPE_CHECKING:
    from billing.invoices.models import Invoice
    from billing.payments.models import Payment
    from contracts.models import Customer


class PaymentError(Exception):
    """The provider refused or failed; `message` is safe to show to the customer."""

    code = "payment_error"
    default_message = "The payment could not be completed."

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        if code:
            self.code = code


class ProviderUnavailable(PaymentError, TransientError):
    """Unreachable, timed out, 5xx, rate limited or busy: nothing was charged, try again later.

    A saved-method charge or a refund stays pending, so the next try is sent under the same
    idempotency key and the provider answers with what it did the first time, if anything.
    """

    code = "provider_unavailable"
    default_message = (
        "The payment service is not reachable right now. Nothing was charged; "
        "please try again in a few minutes."
    )


class ProviderBusy(ProviderUnavailable):
    """The provider is still working on a request with the same idempotency key (Stripe's
    409 idempotency_key_in_use), or on the same object (409 lock_timeout). The first
    request's answer decides the attempt; this one records nothing and is tried again."""

    code = "provider_busy"
    default_message = (
        "This payment is already being processed. Nothing more was charged; "
        "please try again in a minute."
    )


class CardDeclined(PaymentError):
    code = "card_declined"
    default_message = "The card was declined. Please use another card."


class AuthenticationRequired(PaymentError):
    """The bank wants the customer to confirm (3-D Secure); they must pay online."""

    code = "authentication_required"
    default_message = "Your bank asks you to confirm this payment. Please pay the invoice online."


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True)
class ChargeOutcome:
    """What a provider says about one payment (a PaymentIntent)."""

    status: str  # succeeded | processing | requires_action | failed | cancelled | pending
    provider_payment_id: str = ""
    charge_id: str = ""
    brand: str = ""
    last4: str = ""
    failure_code: str = ""
    failure_message: str = ""
    # requires_action: the page where the customer confirms it (3-D Secure), when there is one.
    action_url: str = ""
    # What the provider says it took (None: it did not say), in ISO upper case, and from whom.
    amount_received: Decimal | None = None
    currency: str = ""
    provider_customer_id: str = ""


@dataclass(frozen=True)
class RefundOutcome:
    id: str
    status: str  # pending | succeeded | failed
    amount: Decimal
    # Set when the refund succeeds now and fails at the processor later (the sandbox's
    # refund-failure test card, like Stripe's 4000 0000 0000 5126): the failure reason.
    fails_later: str = ""


@dataclass(frozen=True)
class MethodInfo:
    """A saved method as the provider describes it. Cards have brand and expiry; bank
    accounts (type sepa_debit, us_bank_account) a bank name and the debit mandate."""

    id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    type: str = "card"
    bank_name: str = ""
    mandate_reference: str = ""
    mandate_id: str = ""
    mandate_accepted_at: datetime.datetime | None = None
    mandate_text: str = ""


class EventKind(enum.StrEnum):
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_REQUIRES_ACTION = "payment_requires_action"
    # A bank debit was submitted: money arrives (or not) days later, in its own event.
    PAYMENT_PROCESSING = "payment_processing"
    CHECKOUT_EXPIRED = "checkout_expired"
    REFUNDED = "refunded"
    REFUND_FAILED = "refund_failed"
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_CLOSED = "dispute_closed"
    METHOD_ATTACHED = "method_attached"
    METHOD_DETACHED = "method_detached"
    SETUP_COMPLETED = "setup_completed"


@dataclass(frozen=True)
class ProviderEvent:
    """A provider's event in our terms. Payments are found by our id, else provider ids."""

    kind: EventKind
    payment_id: int | None = None
    invoice_id: int | None = None
    checkout_id: str = ""
    provider_payment_id: str = ""
    charge_id: str = ""
    brand: str = ""
    last4: str = ""
    failure_code: str = ""
    failure_message: str = ""
    # PAYMENT_SUCCEEDED (and REFUNDED from a charge): what the provider says it took, in ISO
    # upper case; None when the event does not say. provider_customer_id names the payer.
    amount_received: Decimal | None = None
    currency: str = ""
    # REFUNDED: (provider refund id, amount) of every succeeded refund on the charge.
    # REFUND_FAILED: the one refund that failed or was cancelled; failure_code says why.
    refunds: tuple[tuple[str, Decimal], ...] = ()
    dispute_id: str = ""
    dispute_status: str = ""
    dispute_amount: Decimal | None = None
    provider_customer_id: str = ""
    customer_id: int | None = None
    method: MethodInfo | None = None
    setup_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class PaymentProvider:
    """What billing.payments.services needs from a payment processor."""

    name = ""
    # True when refunds are final as soon as refund_create returns (no webhook follows).
    confirms_refunds_synchronously = False

    def checkout_create(
        self,
        *,
        payment: "Payment",
        invoice: "Invoice",
        customer_ref: str,
        success_url: str,
        cancel_url: str,
        language: str | None = None,
    ) -> CheckoutSession:
        """`language` is the one the payer was reading when they clicked Pay online (a
        provider with its own hosted page shows it in that language); None: its default."""
        raise NotImplementedError

    def checkout_expire(self, *, checkout_id: str) -> None:
        raise NotImplementedError

    def setup_checkout_create(
        self, *, customer: "Customer", customer_ref: str, success_url: str, cancel_url: str
    ) -> CheckoutSession:
        raise NotImplementedError

    def customer_ref(self, *, customer: "Customer") -> str:
        """The provider's id for the customer, created when first needed."""
        return ""

    @classmethod
    def known_customer_ref(cls, *, customer: "Customer") -> str:
        """The provider's id for the customer as we stored it; "" when there is none yet.

        Never calls the provider: the money services compare it with the payer an event names.
        """
        return ""

    def charge_saved_method(
        self,
        *,
        payment: "Payment",
        invoice: "Invoice",
        customer_ref: str,
        method_id: str,
        off_session: bool,
    ) -> ChargeOutcome:
        raise NotImplementedError

    def payment_retrieve(self, *, payment: "Payment") -> ChargeOutcome | None:
        """Current state of a payment at the provider; None when it never got there."""
        raise NotImplementedError

    def payment_confirmation(self, *, payment: "Payment", return_url: str) -> ChargeOutcome:
        """The payment's state, with `action_url` set when the customer can confirm it
        (3-D Secure) on a hosted page that sends them back to `return_url`."""
        raise NotImplementedError

    def payment_cancel(self, *, payment: "Payment") -> ChargeOutcome:
        """Cancel a payment that waits for the customer, so it can no longer take money.

        Answers the state it ends in: "cancelled", or what it became instead when it
        cannot be cancelled any more (it succeeded meanwhile).
        """
        raise NotImplementedError

    def refund_create(
        self, *, payment: "Payment", amount_minor: int, idempotency_key: str, reason: str
    ) -> RefundOutcome:
        raise NotImplementedError

    def methods_list(self, *, customer_ref: str) -> list[MethodInfo]:
        raise NotImplementedError

    def method_detach(self, *, method_id: str) -> None:
        raise NotImplementedError

    def method_set_default(self, *, customer_ref: str, method_id: str) -> None:
        raise NotImplementedError
