"""Payments: attempts and what became of them, refunds, saved methods, provider events."""

import datetime
from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from billing.invoices.models import CreditNote, Invoice
from contracts.models import Customer, LeaseContract
from core.money import ZERO


class PaymentStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    REQUIRES_ACTION = "requires_action", _("Requires action")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    REFUNDED = "refunded", _("Refunded")
    # The provider took money we cannot credit as it is (other currency, other customer, no
    # amount): it waits for staff, counts toward no invoice, and can only be refunded.
    HELD = "held", _("Held for staff")


_IN_FLIGHT = frozenset(
    {
        PaymentStatus.PROCESSING,
        PaymentStatus.REQUIRES_ACTION,
        PaymentStatus.SUCCEEDED,
        PaymentStatus.FAILED,
        PaymentStatus.CANCELLED,
        PaymentStatus.HELD,
    }
)


PAYMENT_TRANSITIONS = {
    PaymentStatus.PENDING: _IN_FLIGHT,
    PaymentStatus.PROCESSING: _IN_FLIGHT - {PaymentStatus.PROCESSING},
    PaymentStatus.REQUIRES_ACTION: _IN_FLIGHT - {PaymentStatus.REQUIRES_ACTION},
    # A failed PaymentIntent may be confirmed again and still succeed.
    PaymentStatus.FAILED: frozenset(
        {
            PaymentStatus.PROCESSING,
            PaymentStatus.REQUIRES_ACTION,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.HELD,
        }
    ),
    PaymentStatus.SUCCEEDED: frozenset({PaymentStatus.REFUNDED}),
    # We gave up on the attempt (session expired, contract cancelled) but the provider
    # took the money after all: it is recorded, then applied or refunded, never lost.
    PaymentStatus.CANCELLED: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.HELD}),
    # A refund that had succeeded failed at the processor later: the money is ours again,
    # credited (succeeded) or still held for staff (held).
    PaymentStatus.REFUNDED: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.HELD}),
    PaymentStatus.HELD: frozenset({PaymentStatus.REFUNDED}),
}


class PaymentKind(models.TextChoices):
    CHECKOUT = "checkout", _("Pay online")
    AUTOMATIC = "automatic", _("Automatic charge")
    API = "api", _("API")
    OUT_OF_BAND = "out_of_band", _("Recorded by staff")


class Payment(models.Model):
    """One attempt to collect money for an invoice, and what became of it."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    provider = models.CharField(max_length=16)
    kind = models.CharField(max_length=16, choices=PaymentKind.choices)
    status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    # What we asked for (amount, currency) and what the provider says it took.
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    amount_received = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency_received = models.CharField(max_length=3, blank=True)
    held_reason = models.CharField(max_length=300, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    idempotency_key = models.CharField(max_length=100, unique=True)
    provider_payment_id = models.CharField(
        max_length=100, null=True, blank=True, unique=True, help_text="PaymentIntent id."
    )
    provider_checkout_id = models.CharField(
        max_length=100, null=True, blank=True, unique=True, help_text="Checkout Session id."
    )
    provider_charge_id = models.CharField(max_length=100, blank=True, db_index=True)
    checkout_url = models.URLField(max_length=1000, blank=True)
    # Where the checkout sends its payer back: a session is reused only for the same ones.
    checkout_success_url = models.URLField(max_length=1000, blank=True)
    checkout_cancel_url = models.URLField(max_length=1000, blank=True)
    method_brand = models.CharField(max_length=20, blank=True)
    method_last4 = models.CharField(max_length=4, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    amount_refunded = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    # What of this payment its invoice holds now: credited, less the refunds taken off the
    # invoice. The rest of what is left with us (an excess, a duplicate) was never the invoice's.
    amount_credited = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    # Set when the payment arrived for an invoice that was already settled and was sent back.
    is_duplicate = models.BooleanField(default=False)
    dispute_status = models.CharField(max_length=24, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # Money leaving the company is its own permission, apart from changing records.
        permissions = [("refund_payment", "Can refund payments through the provider")]
        indexes = [
            models.Index(fields=["invoice", "created_at"], name="payment_invoice_created"),
            models.Index(fields=["status", "created_at"], name="payment_status_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_received__isnull=True) | Q(amount_received__gte=0),
                name="payment_received_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(
                    amount_refunded__gte=0,
                    amount_refunded__lte=Coalesce(F("amount_received"), F("amount")),
                ),
                name="payment_refund_within_collected",
            ),
            models.CheckConstraint(
                condition=Q(
                    amount_credited__gte=0,
                    amount_credited__lte=Coalesce(F("amount_received"), F("amount"))
                    - F("amount_refunded"),
                ),
                name="payment_credited_within_left",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency} ({self.status})"

    @property
    def amount_collected(self) -> Decimal:
        """What the provider holds of this payment: the amount received once it said so."""
        return self.amount if self.amount_received is None else self.amount_received


class RefundStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class Refund(models.Model):
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(
        max_length=12, choices=RefundStatus.choices, default=RefundStatus.PENDING
    )
    reason = models.CharField(max_length=200, blank=True)
    provider_refund_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    idempotency_key = models.CharField(max_length=100, unique=True)
    # What the processor said when the refund failed (Stripe's failure_reason), if it did.
    failure_reason = models.CharField(max_length=100, blank=True)
    # The credit note this refund settles: its money is accounted on the credit note, so
    # the invoice's own amount_refunded and status are left alone.
    credit_note = models.ForeignKey(
        CreditNote, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds"
    )
    # The part of this refund taken off the invoice; the rest returned money it never held.
    invoice_share = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    created_at = models.DateTimeField(auto_now_add=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Refund {self.amount} ({self.status})"


class PaymentMethodType(models.TextChoices):
    CARD = "card", _("Card")
    SEPA_DEBIT = "sepa_debit", _("SEPA Direct Debit")
    US_BANK_ACCOUNT = "us_bank_account", _("US bank account (ACH)")


# Bank debits: charged off-session like a card, but they settle days later (processing).
BANK_METHOD_TYPES = frozenset({PaymentMethodType.SEPA_DEBIT, PaymentMethodType.US_BANK_ACCOUNT})


class PaymentMethod(models.Model):
    """A saved payment method of a customer at the provider: a card, or a bank account the
    customer gave a debit mandate for (SEPA Direct Debit, ACH)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="payment_methods")
    provider = models.CharField(max_length=16)
    provider_id = models.CharField(max_length=100)
    type = models.CharField(
        max_length=20, choices=PaymentMethodType.choices, default=PaymentMethodType.CARD
    )
    # Cards: the brand ("visa"); bank accounts: left blank, the bank is bank_name.
    brand = models.CharField(max_length=20, blank=True)
    bank_name = models.CharField(max_length=100, blank=True)
    last4 = models.CharField(max_length=4)
    # Only cards expire.
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    # The debit mandate: its reference (what the bank statement names), the provider's
    # mandate id, when the customer accepted it, and the wording they accepted.
    mandate_reference = models.CharField(max_length=100, blank=True)
    mandate_id = models.CharField(max_length=100, blank=True)
    mandate_accepted_at = models.DateTimeField(null=True, blank=True)
    mandate_text = models.TextField(blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_id"], name="pm_unique_provider"),
            models.UniqueConstraint(
                fields=["customer"], condition=Q(is_default=True), name="pm_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def is_bank(self) -> bool:
        return self.type in BANK_METHOD_TYPES

    @property
    def label(self) -> str:
        """How the method reads to the customer: "Visa •••• 4242",
        "SEPA Direct Debit · Deutsche Bank •••• 3000"."""
        if self.is_bank:
            kind = self.get_type_display()
            bank = f" · {self.bank_name}" if self.bank_name else ""
            return f"{kind}{bank} •••• {self.last4}"
        return f"{(self.brand or 'card').capitalize()} •••• {self.last4}"


class ContractPaymentMethod(models.Model):
    """The payment method a contract is charged with, when it names its own; without a row
    the customer's default method is used. Lives here, not on the contract, because
    contracts sits below billing and cannot know payment methods."""

    contract = models.OneToOneField(
        LeaseContract, on_delete=models.CASCADE, related_name="payment_method_link"
    )
    # PROTECT: a method a contract uses is removed only after the contract got another one.
    method = models.ForeignKey(
        PaymentMethod, on_delete=models.PROTECT, related_name="contract_links"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.contract} → {self.method}"


# How long an Idempotency-Key names one request (Stripe's 24 hours); reused later, it is a
# new request. The API's replay (billing.api.idempotency) and the charge it made both use it.
IDEMPOTENCY_KEY_TTL = datetime.timedelta(hours=24)


# The note on an event that named a payment we did not know yet (it is replayed later).
UNKNOWN_PAYMENT_NOTE = "unknown payment"


class WebhookEventStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed (retried by the sweep)"
    INVALID = "invalid", "Invalid signature"


class WebhookEvent(models.Model):
    """A provider event as it arrived: stored raw, once per event id, before it is acted on.

    The endpoint only stores it (status received); a worker applies it
    (billing.payments.webhooks.webhook_event_process) and a periodic sweep retries what
    failed or was never picked up, so `attempts` and `attempted_at` show staff an event
    that keeps failing.
    """

    provider = models.CharField(max_length=16, default="stripe")
    # Unique per provider (Meta): Stripe's evt_... and Razorpay's event ids share the table.
    event_id = models.CharField(max_length=100, null=True, blank=True)
    type = models.CharField(max_length=100, blank=True, db_index=True)
    object_id = models.CharField(max_length=100, blank=True, db_index=True)
    status = models.CharField(
        max_length=12, choices=WebhookEventStatus.choices, default=WebhookEventStatus.RECEIVED
    )
    body = models.TextField(blank=True)
    note = models.TextField(blank=True)
    deliveries = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="webhook_unique_provider_event"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="webhook_status_received"),
            # Every applied event looks for events that waited on its payment; keep that
            # lookup to the (few) waiting rows instead of scanning the whole event log.
            models.Index(
                fields=["received_at"],
                condition=Q(note=UNKNOWN_PAYMENT_NOTE),
                name="webhook_waiting_for_payment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type or 'event'} {self.event_id or '(invalid)'}"


class WebhookEventRef(models.Model):
    """A quoted token (an id such as pi_..., ch_..., pay_...) in the body of an event that
    waits for its payment (unknown payment, or out of order), written when it starts
    waiting. An applied event finds the events waiting on its payment through these rows
    by index; searching the bodies of every waiting event grew with events that never find
    a payment (a Stripe account's other intents), and each batch paid for all of them."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="refs")
    ref = models.CharField(max_length=255)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ref", "event"], name="webhook_ref_unique"),
        ]

    def __str__(self) -> str:
        return self.ref
