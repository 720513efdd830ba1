import datetime
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.urls import reverse

from contracts.models import Customer, IPBlock, LeaseContract

from .money import ZERO

DRAFT_REF_PREFIX = "draft-"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    VOID = "void", "Void"
    REFUND = "refund", "Refund"
    UNCOLLECTIBLE = "uncollectible", "Uncollectible"


# The only place that says which invoice status may follow which.
INVOICE_TRANSITIONS = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.OPEN, InvoiceStatus.VOID}),
    InvoiceStatus.OPEN: frozenset(
        {InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}
    ),
    InvoiceStatus.UNCOLLECTIBLE: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID}),
    InvoiceStatus.PAID: frozenset({InvoiceStatus.REFUND}),
    # The refund failed at the processor after it had succeeded: the money came back.
    InvoiceStatus.REFUND: frozenset({InvoiceStatus.PAID}),
    InvoiceStatus.VOID: frozenset(),
}


def overdue_q(today: datetime.date, prefix: str = "") -> Q:
    """Overdue is derived, never stored: Open and past the due date (see Invoice.is_overdue)."""
    return Q(**{f"{prefix}status": InvoiceStatus.OPEN, f"{prefix}due_date__lt": today})


# Statuses in which money is still owed and a payment may be taken.
PAYABLE_STATUSES = frozenset({InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE})


class BillingReason(models.TextChoices):
    SUBSCRIPTION_CREATE = "subscription_create", "First period of a contract"
    SUBSCRIPTION_CYCLE = "subscription_cycle", "Monthly period"
    MANUAL = "manual", "Manual"


class TaxRate(models.Model):
    """A rate in force in a country from a date; the newest one not after the issue date applies."""

    country = models.CharField(max_length=2)
    name = models.CharField(max_length=40, help_text='Shown on invoices, e.g. "VAT" or "IGST".')
    rate = models.DecimalField(max_digits=5, decimal_places=2, help_text="Percent, e.g. 19.00.")
    valid_from = models.DateField(default=datetime.date(2000, 1, 1))

    class Meta:
        ordering = ["country", "-valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["country", "valid_from"], name="taxrate_unique_from"),
            models.CheckConstraint(
                condition=Q(rate__gte=0, rate__lte=100), name="taxrate_percent_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.country} {self.name} {self.rate}% from {self.valid_from}"


class InvoiceNumberCounter(models.Model):
    """Last number handed out per series and year; its row lock makes numbers gapless."""

    series = models.CharField(max_length=10)
    year = models.PositiveIntegerField()
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["series", "year"], name="counter_unique_series_year")
        ]

    def __str__(self) -> str:
        return f"{self.series}-{self.year}: {self.last_number}"


class Invoice(models.Model):
    number = models.CharField(max_length=32, null=True, blank=True, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    contract = models.ForeignKey(
        LeaseContract, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    status = models.CharField(
        max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    billing_reason = models.CharField(
        max_length=24, choices=BillingReason.choices, default=BillingReason.SUBSCRIPTION_CYCLE
    )
    currency = models.CharField(max_length=3)
    period_start = models.DateField()
    period_end = models.DateField(help_text="Last day of the period, inclusive.")
    issue_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    subtotal = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    tax = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    total = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    amount_paid = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    amount_refunded = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    # What the customer looked like when the invoice was issued: an invoice never changes
    # because the customer later moved or changed their VAT id.
    bill_to_name = models.CharField(max_length=200, blank=True)
    bill_to_address = models.TextField(blank=True)
    bill_to_country = models.CharField(max_length=2, blank=True)
    bill_to_tax_id = models.CharField(max_length=32, blank=True)
    bill_to_email = models.EmailField(blank=True)
    tax_note = models.CharField(max_length=300, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    paid_out_of_band = models.BooleanField(default=False)
    voided_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    marked_uncollectible_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every change a document shows; the PDF cache is keyed on it.
    state_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-issue_date", "-id"]
        indexes = [
            models.Index(
                fields=["customer", "status", "issue_date"], name="inv_cust_status_issued"
            ),
            models.Index(fields=["customer", "issue_date", "id"], name="inv_cust_issued"),
            models.Index(fields=["customer", "due_date"], name="inv_cust_due"),
            models.Index(fields=["status", "due_date"], name="inv_status_due"),
            models.Index(fields=["contract", "period_start"], name="inv_contract_period"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(subtotal__gte=0), name="inv_subtotal_not_negative"),
            models.CheckConstraint(condition=Q(tax__gte=0), name="inv_tax_not_negative"),
            models.CheckConstraint(condition=Q(total__gte=0), name="inv_total_not_negative"),
            models.CheckConstraint(
                condition=Q(total=F("subtotal") + F("tax")), name="inv_total_is_sum"
            ),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0, amount_paid__lte=F("total")),
                name="inv_paid_within_total",
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0, amount_refunded__lte=F("amount_paid")),
                name="inv_refunded_within_paid",
            ),
            models.CheckConstraint(
                condition=Q(status=InvoiceStatus.DRAFT) | Q(number__isnull=False),
                name="inv_number_when_final",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gte=F("period_start")), name="inv_period_ordered"
            ),
            models.UniqueConstraint(
                fields=["contract", "period_start"],
                condition=~Q(status=InvoiceStatus.VOID) & Q(contract__isnull=False),
                name="inv_one_per_contract_period",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"Draft #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("billing:invoice-detail", args=[self.ref])

    @property
    def ref(self) -> str:
        """How URLs name the invoice: its number, or draft-<id> before it has one."""
        return self.number or f"{DRAFT_REF_PREFIX}{self.pk}"

    @property
    def amount_remaining(self) -> Decimal:
        if self.status in PAYABLE_STATUSES or self.status == InvoiceStatus.DRAFT:
            return self.total - self.amount_paid
        return ZERO

    @property
    def is_payable(self) -> bool:
        return self.status in PAYABLE_STATUSES and self.amount_remaining > 0

    def is_overdue(self, today: datetime.date) -> bool:
        """Open and past its due date: the same rule as overdue_q(), for one instance."""
        return (
            self.status == InvoiceStatus.OPEN
            and self.due_date is not None
            and self.due_date < today
        )

    @property
    def cancellation_date(self) -> datetime.date | None:
        """When the contract is cancelled if this invoice stays unpaid (due date + grace)."""
        if self.due_date is None or self.status != InvoiceStatus.OPEN:
            return None
        deadline = self.due_date + datetime.timedelta(days=settings.GRACE_PERIOD_DAYS)
        extended = self.contract.grace_extended_until if self.contract_id else None
        return max(deadline, extended) if extended else deadline


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField(default=0)
    description = models.CharField(max_length=500)
    block = models.ForeignKey(
        IPBlock, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    quantity = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("1"))
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    tax_rate = models.DecimalField(max_digits=5, decimal_places=2, default=ZERO)

    class Meta:
        ordering = ["invoice", "position", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="line_quantity_positive"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="line_price_not_negative"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="line_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return self.description


class InvoiceTax(models.Model):
    """One row of the tax breakdown: the net amount taxed at one rate and the tax on it."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="tax_lines")
    name = models.CharField(max_length=40)
    rate = models.DecimalField(max_digits=5, decimal_places=2)
    taxable_amount = models.DecimalField(max_digits=14, decimal_places=2)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["invoice", "-rate"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="invtax_not_negative"),
        ]
        verbose_name = "invoice tax line"

    def __str__(self) -> str:
        return f"{self.name} {self.rate}%"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    REQUIRES_ACTION = "requires_action", "Requires action"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    REFUNDED = "refunded", "Refunded"
    # The provider took money we cannot credit as it is (other currency, other customer, no
    # amount): it waits for staff, counts toward no invoice, and can only be refunded.
    HELD = "held", "Held for staff"


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
    CHECKOUT = "checkout", "Pay online"
    AUTOMATIC = "automatic", "Automatic charge"
    API = "api", "API"
    OUT_OF_BAND = "out_of_band", "Recorded by staff"


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
    # Set when the payment arrived for an invoice that was already settled and was sent back.
    is_duplicate = models.BooleanField(default=False)
    dispute_status = models.CharField(max_length=24, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
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
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency} ({self.status})"

    @property
    def amount_collected(self) -> Decimal:
        """What the provider holds of this payment: the amount received once it said so."""
        return self.amount if self.amount_received is None else self.amount_received


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


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


class PaymentMethod(models.Model):
    """A saved payment method (card) of a customer at the provider."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="payment_methods")
    provider = models.CharField(max_length=16)
    provider_id = models.CharField(max_length=100)
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
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
        return f"{self.brand} •••• {self.last4}"


class ApiScope(models.TextChoices):
    READ_INVOICES = "read:invoices", "Read invoices"
    PAY_INVOICES = "pay:invoices:pay", "Pay invoices"


class ApiToken(models.Model):
    """A personal API token. Only a SHA-256 of the secret is stored; it is shown once.

    The secret has 256 bits of entropy, so a fast hash is enough: nobody can guess
    their way to a preimage, and lookups stay a single indexed equality.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="api_tokens")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="First characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


# How long an Idempotency-Key names one request (Stripe's 24 hours); reused later, it is a
# new request. The API's replay (billing.api.idempotency) and the charge it made both use it.
IDEMPOTENCY_KEY_TTL = datetime.timedelta(hours=24)


class IdempotencyRecord(models.Model):
    """The first response to a POST with an Idempotency-Key, replayed for 24 hours."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "key"], name="idempotency_unique_key")
        ]

    def __str__(self) -> str:
        return self.key


# The note on an event that named a payment we did not know yet (it is replayed later).
UNKNOWN_PAYMENT_NOTE = "unknown payment"


class WebhookEventStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed (will be retried)"
    INVALID = "invalid", "Invalid signature"


class WebhookEvent(models.Model):
    """A provider event as it arrived: stored raw, once per event id, before it is acted on."""

    provider = models.CharField(max_length=16, default="stripe")
    event_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
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

    class Meta:
        ordering = ["-received_at", "-id"]
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
