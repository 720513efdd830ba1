"""API tokens and the Idempotency-Key log."""

from django.conf import settings
from django.db import models

from contracts.models import Customer


class ApiScope(models.TextChoices):
    READ_INVOICES = "read:invoices", "Read invoices"
    PAY_INVOICES = "pay:invoices:pay", "Pay invoices"
    DISPUTE_INVOICES = "invoices:dispute", "Report a problem with an invoice"
    READ_BILLING_DETAILS = "billing_details:read", "Read billing details"
    WRITE_BILLING_DETAILS = "billing_details:write", "Read and change billing details"
    READ_PAYMENT_METHODS = "payment_methods:read", "Read saved payment methods"


# What each scope allows, on the tokens page and in the API document's introduction.
SCOPE_ALLOWS = {
    ApiScope.READ_INVOICES: "list and read the customer's invoices",
    ApiScope.PAY_INVOICES: "pay an invoice with a payment method saved for the customer",
    ApiScope.DISPUTE_INVOICES: "report a problem with an invoice (puts it under review)",
    ApiScope.READ_BILLING_DETAILS: "read the customer's billing details",
    ApiScope.WRITE_BILLING_DETAILS: "read and change the customer's billing details",
    ApiScope.READ_PAYMENT_METHODS: (
        "list the customer's saved cards and bank accounts (ids to pay with, mandates)"
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
