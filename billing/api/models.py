"""API tokens, the Idempotency-Key log, and the customers' outgoing webhooks."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from contracts.models import Customer


class ApiScope(models.TextChoices):
    READ_INVOICES = "read:invoices", _("Read invoices")
    PAY_INVOICES = "pay:invoices:pay", _("Pay invoices")
    DISPUTE_INVOICES = "invoices:dispute", _("Report a problem with an invoice")
    READ_BILLING_DETAILS = "billing_details:read", _("Read billing details")
    WRITE_BILLING_DETAILS = "billing_details:write", _("Read and change billing details")
    READ_PAYMENT_METHODS = "payment_methods:read", _("Read saved payment methods")
    READ_ACTIVITY = "activity:read", _("Read the account's activity")
    READ_WEBHOOK_ENDPOINTS = "webhook_endpoints:read", _("Read webhook endpoints")


# What each scope allows, on the tokens page (in its language) and in the API document's
# introduction (English, like the whole JSON API).
SCOPE_ALLOWS = {
    ApiScope.READ_INVOICES: _("list and read the customer's invoices"),
    ApiScope.PAY_INVOICES: _("pay an invoice with a payment method saved for the customer"),
    ApiScope.DISPUTE_INVOICES: _("report a problem with an invoice (puts it under review)"),
    ApiScope.READ_BILLING_DETAILS: _("read the customer's billing details"),
    ApiScope.WRITE_BILLING_DETAILS: _("read and change the customer's billing details"),
    ApiScope.READ_PAYMENT_METHODS: _(
        "list the customer's saved cards and bank accounts (ids to pay with, mandates)"
    ),
    ApiScope.READ_ACTIVITY: _("read the account's activity (what the activity page shows)"),
    ApiScope.READ_WEBHOOK_ENDPOINTS: _(
        "list the customer's webhook endpoints and their events (never their secrets)"
    ),
}


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


# --- Outgoing webhooks (docs/decisions.md, "Outgoing webhooks (issue 19)") -------------


class WebhookEventType(models.TextChoices):
    INVOICE_FINALIZED = "invoice.finalized", _("An invoice was issued")
    INVOICE_PAID = "invoice.paid", _("An invoice was paid")
    INVOICE_PAYMENT_FAILED = "invoice.payment_failed", _("A payment of an invoice failed")
    INVOICE_OVERDUE = "invoice.overdue", _("An invoice is overdue")
    CREDIT_NOTE_CREATED = "credit_note.created", _("A credit note was issued")
    CONTRACT_CANCELLATION_SCHEDULED = (
        "contract.cancellation_scheduled",
        _("A contract will be cancelled unless an invoice is paid"),
    )
    CONTRACT_CANCELLED = "contract.cancelled", _("A contract was cancelled")


class WebhookEndpoint(models.Model):
    """A customer's URL that receives the events it chose, signed with its own secret.

    The secret is kept as it is (not hashed): the portal signs every delivery with it, and
    owners and billing members may read it again on the page (as on Stripe's dashboard).
    """

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=80)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # The first failed attempt since the last delivered one; cleared by any 2xx.
    failing_since = models.DateTimeField(null=True, blank=True)
    # Set when the "endpoint disabled" e-mail went out; the claim that it goes out once.
    disabled_notice_sent_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.url[:200]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Delivered")
    FAILED = "failed", _("Failed")


class WebhookDelivery(models.Model):
    """One event for one endpoint: its payload, the attempts so far and when the next is due.

    `audit_entry_id` is the audit entry that recorded the business fact: one fact gives one
    event per endpoint however often the hook runs (the unique constraint)."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=40, db_index=True)
    type = models.CharField(max_length=64, choices=WebhookEventType.choices)
    audit_entry_id = models.BigIntegerField()
    object_api_id = models.CharField(max_length=40, help_text="E.g. in_42, cn_7, sub_3.")
    # Built after the business transaction commits (None until then; the sender builds it
    # if the after-commit step never ran).
    payload = models.JSONField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    retry_until = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_response_body = models.CharField(max_length=500, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "audit_entry_id", "type"], name="webhook_delivery_once"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery, with what the receiver answered."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    at = models.DateTimeField()
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    replay = models.BooleanField(default=False)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.response_code or self.error}"
