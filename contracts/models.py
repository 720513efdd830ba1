import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

EU_COUNTRIES = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)


class DocumentLanguage(models.TextChoices):
    EN = "en", "English"
    DE = "de", "Deutsch"


class Customer(models.Model):
    """An organisation that leases blocks; people act for it through memberships.

    Billing details change only through contracts.services.customer_update (page and
    admin), which validates them and records before and after in the audit log.
    """

    name = models.CharField("legal name", max_length=200)
    email = models.EmailField(
        "billing e-mail", help_text="First recipient of invoices, reminders and receipts."
    )
    billing_cc_emails = models.JSONField(
        "further billing e-mails",
        default=list,
        blank=True,
        help_text="Also receive every invoice, reminder and receipt.",
    )
    phone = models.CharField(max_length=40, blank=True)
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, e.g. DE.")
    is_business = models.BooleanField(default=True)
    tax_id = models.CharField(
        "VAT/GST id", max_length=32, blank=True, help_text="EU VAT id or Indian GSTIN."
    )
    purchase_order_reference = models.CharField(
        "purchase order reference",
        max_length=100,
        blank=True,
        help_text="The customer's order number; printed on invoices.",
    )
    # Printed on documents and sent in e-invoices (EN 16931 BT-10, BT-13); a contract may
    # override both.
    buyer_reference = models.CharField(
        "buyer reference",
        max_length=100,
        blank=True,
        help_text="Routing id of the buyer, e.g. the Leitweg-ID of a German public body.",
    )
    document_language = models.CharField(
        max_length=2, choices=DocumentLanguage.choices, default=DocumentLanguage.EN
    )
    # The last answer of the EU's VIES service for `vies_tax_id`; an outage leaves it as
    # it was and only sets vies_error, so billing goes on with the last known answer.
    vies_valid = models.BooleanField("VIES says valid", null=True, blank=True)
    vies_tax_id = models.CharField("VAT id checked in VIES", max_length=32, blank=True)
    vies_checked_at = models.DateTimeField("VIES answered at", null=True, blank=True)
    vies_request_identifier = models.CharField(
        "VIES consultation number", max_length=64, blank=True
    )
    vies_trader = models.TextField("name and address in VIES", blank=True)
    vies_error = models.CharField("last VIES failure", max_length=300, blank=True)
    vies_error_at = models.DateTimeField("last VIES failure at", null=True, blank=True)
    default_currency = models.CharField(max_length=3, default="EUR")
    stripe_customer_id = models.CharField(max_length=64, blank=True, db_index=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="customers"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["name"])]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.country = (self.country or "").upper()
        if len(self.country) != 2 or not self.country.isalpha():
            raise ValidationError({"country": "Use a two-letter country code such as DE."})

    @property
    def billing_recipients(self) -> list[str]:
        """Everyone who receives invoices, reminders and receipts, once each."""
        seen: dict[str, str] = {}
        for email in [self.email, *(self.billing_cc_emails or [])]:
            if email and email.lower() not in seen:
                seen[email.lower()] = email
        return list(seen.values())

    @property
    def vies_confirmed(self) -> bool:
        """VIES said the current VAT id is valid (its last answer, however old)."""
        return bool(self.vies_valid) and bool(self.tax_id) and self.vies_tax_id == self.tax_id

    @property
    def address_lines(self) -> list[str]:
        city_line = " ".join(p for p in (self.postal_code, self.city) if p)
        parts = [self.address_line1, self.address_line2, city_line, self.state, self.country]
        return [p for p in parts if p]


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    BILLING = "billing", pgettext_lazy("role", "Billing")
    VIEWER = "viewer", _("Viewer")


# Roles that may pay, download, manage payment methods and API tokens.
PAYING_ROLES = frozenset({Role.OWNER, Role.BILLING})


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "customer"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.customer} ({self.role})"

    @property
    def can_pay(self) -> bool:
        return self.role in PAYING_ROLES


class Registry(models.TextChoices):
    RIPE = "RIPE", "RIPE NCC"
    ARIN = "ARIN", "ARIN"
    APNIC = "APNIC", "APNIC"
    LACNIC = "LACNIC", "LACNIC"
    AFRINIC = "AFRINIC", "AFRINIC"


class BlockStatus(models.TextChoices):
    AVAILABLE = "available", _("Available")
    LEASED = "leased", _("Leased")
    DEACTIVATED = "deactivated", _("Deactivated")


BLOCK_TRANSITIONS = {
    BlockStatus.AVAILABLE: frozenset({BlockStatus.LEASED, BlockStatus.DEACTIVATED}),
    BlockStatus.LEASED: frozenset({BlockStatus.DEACTIVATED, BlockStatus.AVAILABLE}),
    BlockStatus.DEACTIVATED: frozenset({BlockStatus.AVAILABLE}),
}


def parse_ipv4_prefix(value: str) -> ipaddress.IPv4Network:
    """Parse a CIDR prefix strictly: IPv4 only, no host bits set."""
    text = (value or "").strip()
    if "/" not in text:
        raise ValidationError("Write the prefix in CIDR form, e.g. 192.0.2.0/24.")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise ValidationError(
                f"{text} has host bits set; did you mean "
                f"{ipaddress.ip_network(text, strict=False)}?"
            ) from None
        raise ValidationError(f"{text} is not a valid CIDR prefix.") from None
    if network.version != 4:
        raise ValidationError("Only IPv4 prefixes can be leased.")
    return network


class IPBlock(models.Model):
    """An IPv4 prefix. first/last are integer addresses so overlap is an indexed range test."""

    prefix = models.CharField(max_length=18, unique=True)
    first_address = models.BigIntegerField(editable=False)
    last_address = models.BigIntegerField(editable=False)
    registry = models.CharField(max_length=10, choices=Registry.choices, default=Registry.RIPE)
    status = models.CharField(
        max_length=12, choices=BlockStatus.choices, default=BlockStatus.AVAILABLE, db_index=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["first_address"]
        indexes = [models.Index(fields=["first_address", "last_address"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(last_address__gte=models.F("first_address")),
                name="ipblock_range_ordered",
            )
        ]
        verbose_name = "IP block"

    def __str__(self) -> str:
        return self.prefix

    @property
    def size(self) -> int:
        return self.last_address - self.first_address + 1


class ContractStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    PAST_DUE = "past_due", _("Past due")
    CANCELLED = "cancelled", _("Cancelled")


CONTRACT_TRANSITIONS = {
    ContractStatus.ACTIVE: frozenset({ContractStatus.PAST_DUE, ContractStatus.CANCELLED}),
    ContractStatus.PAST_DUE: frozenset({ContractStatus.ACTIVE, ContractStatus.CANCELLED}),
    ContractStatus.CANCELLED: frozenset(),
}


class CancellationReason(models.TextChoices):
    NON_PAYMENT = "non_payment", _("Non-payment")
    CUSTOMER_REQUEST = "customer_request", _("Customer request")
    STAFF = "staff", _("Cancelled by staff")


def contract_reference(pk: int) -> str:
    """How people name a contract: C-000123."""
    return f"C-{pk:06d}"


class LeaseContract(models.Model):
    """A monthly lease of one or more blocks ("subscription")."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="contracts")
    blocks = models.ManyToManyField(IPBlock, related_name="contracts")
    price_per_block = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    billing_anchor_day = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(28)],
        help_text="Day of month each period starts (1-28, so every month has it).",
    )
    status = models.CharField(
        max_length=12, choices=ContractStatus.choices, default=ContractStatus.ACTIVE
    )
    started_on = models.DateField()
    next_billing_date = models.DateField(
        help_text="Start of the next period to invoice; the billing run advances it."
    )
    grace_extended_until = models.DateField(
        null=True, blank=True, help_text="Staff extension of the cancellation deadline."
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason = models.CharField(
        max_length=20, choices=CancellationReason.choices, blank=True
    )
    buyer_reference = models.CharField(
        max_length=100, blank=True, help_text="Overrides the customer's buyer reference."
    )
    purchase_order_reference = models.CharField(
        max_length=100, blank=True, help_text="Overrides the customer's purchase order number."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_on", "-id"]
        # Cancelling deactivates the customer's blocks: a permission of its own.
        permissions = [("cancel_contract", "Can cancel contracts (blocks deactivated)")]
        indexes = [
            models.Index(fields=["status", "next_billing_date"], name="contract_billing_due"),
            models.Index(fields=["customer", "status"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(price_per_block__gte=0), name="contract_price_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(billing_anchor_day__gte=1, billing_anchor_day__lte=28),
                name="contract_anchor_day_1_28",
            ),
        ]
        verbose_name = "lease contract"

    def __str__(self) -> str:
        return f"Contract #{self.pk}"

    @property
    def reference(self) -> str:
        return contract_reference(self.pk)


class ResourceStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    REMOVED = "removed", _("Removed")


class AssignmentRequest(models.Model):
    """A registry assignment (e.g. a RIPE inetnum) made for a leased block."""

    contract = models.ForeignKey(
        LeaseContract, on_delete=models.PROTECT, related_name="assignment_requests"
    )
    block = models.ForeignKey(IPBlock, on_delete=models.PROTECT, related_name="assignments")
    reference = models.CharField(max_length=64, help_text="Registry object or ticket.")
    netname = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=10, choices=ResourceStatus.choices, default=ResourceStatus.ACTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["contract", "status"])]

    def __str__(self) -> str:
        return f"{self.reference} ({self.block})"


class RdnsDelegation(models.Model):
    contract = models.ForeignKey(
        LeaseContract, on_delete=models.PROTECT, related_name="rdns_delegations"
    )
    block = models.ForeignKey(IPBlock, on_delete=models.PROTECT, related_name="rdns_delegations")
    zone = models.CharField(max_length=255)
    nameservers = models.CharField(max_length=500, help_text="Space-separated host names.")
    status = models.CharField(
        max_length=10, choices=ResourceStatus.choices, default=ResourceStatus.ACTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["contract", "status"])]
        verbose_name = "rDNS delegation"

    def __str__(self) -> str:
        return self.zone


class LockoutKind(models.TextChoices):
    LOGIN = "login", "Log-in (username and address)"
    API_TOKEN = "api-token", "API bearer tokens (address)"
    PASSWORD_RESET_ADDRESS = "password-reset-address", "Password reset e-mails (address)"
    PASSWORD_RESET_EMAIL = "password-reset-email", "Password reset e-mails (e-mail)"


class Lockout(models.Model):
    """A lockout that started, so staff can see and lift it (contracts.auth).

    The counters and the lock itself live in the cache, keyed by a hash of the identity
    that cannot be listed; a row is written only when a lock starts, which is rare.
    """

    kind = models.CharField(max_length=24, choices=LockoutKind.choices)
    identity = models.CharField(
        max_length=400,
        help_text="username|address for log-ins, else the address or the e-mail address.",
    )
    failures = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-locked_until"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "identity"], name="lockout_unique_identity")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.identity}"
