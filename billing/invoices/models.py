import datetime
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, OuterRef, Q
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from contracts.models import Customer, IPBlock, LeaseContract
from core.money import ZERO

DRAFT_REF_PREFIX = "draft-"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    OPEN = "open", _("Open")
    PAID = "paid", _("Paid")
    VOID = "void", _("Void")
    REFUND = "refund", _("Refund")
    UNCOLLECTIBLE = "uncollectible", _("Uncollectible")


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


def under_review_q(prefix: str = "") -> Q:
    """The customer reported a problem that staff have not resolved yet ("Under review").

    Reports are billing.collections' InvoiceReport, read here through the relation name
    `reports` and its one condition (resolved_at is null) because invoices never import
    collections. At most one unresolved report exists per invoice (a partial unique
    constraint there), so filtering on it never repeats an invoice.
    """
    # Both conditions in one Q apply to the same joined report; without the first, an
    # invoice with no report at all (a NULL row of the outer join) would match.
    return Q(**{f"{prefix}reports__isnull": False, f"{prefix}reports__resolved_at__isnull": True})


def under_review_flag() -> Exists:
    """`under_review_q` as a column (annotate(under_review=under_review_flag()))."""
    return Exists(Invoice.objects.filter(under_review_q(), pk=OuterRef("pk")))


def payment_processing_flag() -> Exists:
    """The invoice has a bank debit processing ("Payment processing"): billing.payments'
    Payment read through the relation name `payments`, as invoices never import payments."""
    return Exists(
        Invoice.objects.filter(payments__status="processing", pk=OuterRef("pk")).values("pk")
    )


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
    # Credit notes: what they took off the amount owed (before it was paid) and what they
    # credited of money already received (refunded or left as customer credit), as Stripe
    # names them. Refunds made for a credit note are counted here, not in amount_refunded.
    pre_payment_credit_notes_amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=ZERO
    )
    post_payment_credit_notes_amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=ZERO
    )
    # The customer's credit balance used on this invoice at finalisation ("Applied balance").
    applied_balance = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    # What the customer looked like when the invoice was issued: an invoice never changes
    # because the customer later moved or changed their VAT id.
    bill_to_name = models.CharField(max_length=200, blank=True)
    bill_to_address = models.TextField(blank=True)
    bill_to_country = models.CharField(max_length=2, blank=True)
    bill_to_tax_id = models.CharField(max_length=32, blank=True)
    bill_to_email = models.EmailField(blank=True)
    # The address in parts, as e-invoices need it (EN 16931 BG-8); bill_to_address is how
    # the document prints it.
    bill_to_line1 = models.CharField(max_length=200, blank=True)
    bill_to_line2 = models.CharField(max_length=200, blank=True)
    bill_to_postal_code = models.CharField(max_length=20, blank=True)
    bill_to_city = models.CharField(max_length=100, blank=True)
    bill_to_state = models.CharField(max_length=100, blank=True)
    buyer_reference = models.CharField(max_length=100, blank=True)
    purchase_order_reference = models.CharField(max_length=100, blank=True)
    document_language = models.CharField(max_length=2, blank=True)
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
                condition=Q(
                    amount_paid__gte=0,
                    applied_balance__gte=0,
                    pre_payment_credit_notes_amount__gte=0,
                    amount_paid__lte=F("total")
                    - F("applied_balance")
                    - F("pre_payment_credit_notes_amount"),
                ),
                name="inv_settled_within_total",
            ),
            models.CheckConstraint(
                condition=Q(
                    post_payment_credit_notes_amount__gte=0,
                    post_payment_credit_notes_amount__lte=F("total")
                    - F("pre_payment_credit_notes_amount"),
                ),
                name="inv_credited_within_total",
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
        return reverse("invoices:invoice-detail", args=[self.ref])

    @property
    def ref(self) -> str:
        """How URLs name the invoice: its number, or draft-<id> before it has one."""
        return self.number or f"{DRAFT_REF_PREFIX}{self.pk}"

    @property
    def amount_due(self) -> Decimal:
        """What is to be paid once credit notes and the applied balance are taken off."""
        return self.total - self.pre_payment_credit_notes_amount - self.applied_balance

    @property
    def amount_remaining(self) -> Decimal:
        if self.status in PAYABLE_STATUSES or self.status == InvoiceStatus.DRAFT:
            return self.amount_due - self.amount_paid
        return ZERO

    @property
    def credit_notes_amount(self) -> Decimal:
        return self.pre_payment_credit_notes_amount + self.post_payment_credit_notes_amount

    @property
    def amount_creditable(self) -> Decimal:
        """What credit notes may still credit: the total less every earlier credit note."""
        return self.total - self.credit_notes_amount

    @property
    def has_einvoice(self) -> bool:
        """Issued and not void: drafts are no invoices, and a void one must not be booked."""
        return bool(self.number) and self.status not in (InvoiceStatus.DRAFT, InvoiceStatus.VOID)

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


# --- Credit notes -------------------------------------------------------------------


class CreditNoteSettlement(models.TextChoices):
    """Where the part of a credit note that money already paid covers goes (staff choose)."""

    REFUND = "refund", "Refund to the original payment method"
    CREDIT = "credit", "Customer credit balance"


class CreditNote(models.Model):
    """A correction of an issued invoice: a document of its own, never an edit of the invoice.

    Amounts are positive (what is credited). `pre_payment_amount` went off the invoice's
    amount remaining; the rest was money already received: `refund_amount` goes back to
    the original payment method, `credit_amount` to the customer's credit balance.
    """

    number = models.CharField(max_length=32, unique=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_notes")
    currency = models.CharField(max_length=3)
    issue_date = models.DateField()
    reason = models.CharField(max_length=500)
    settlement = models.CharField(max_length=8, choices=CreditNoteSettlement.choices)
    subtotal = models.DecimalField(max_digits=14, decimal_places=2)
    tax = models.DecimalField(max_digits=14, decimal_places=2)
    total = models.DecimalField(max_digits=14, decimal_places=2)
    pre_payment_amount = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    refund_amount = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    credit_amount = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    tax_note = models.CharField(max_length=300, blank=True)
    # Names one issuing request (a form, a dispute's correction): a retry returns this note.
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    # Set once billing.payments has sent the refund (or handed what it could not send to
    # staff): reconciliation retries credit notes without it.
    refund_handled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-issue_date", "-id"]
        indexes = [
            models.Index(fields=["customer", "issue_date", "id"], name="cn_cust_issued"),
            models.Index(fields=["customer", "currency", "issue_date"], name="cn_cust_cur_issued"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total__gt=0), name="cn_total_positive"),
            models.CheckConstraint(
                condition=Q(subtotal__gte=0, tax__gte=0, total=F("subtotal") + F("tax")),
                name="cn_total_is_sum",
            ),
            models.CheckConstraint(
                condition=Q(
                    pre_payment_amount__gte=0,
                    refund_amount__gte=0,
                    credit_amount__gte=0,
                    total=F("pre_payment_amount") + F("refund_amount") + F("credit_amount"),
                ),
                name="cn_settled_in_full",
            ),
        ]

    def __str__(self) -> str:
        return self.number

    def get_absolute_url(self) -> str:
        return reverse("invoices:credit-note-detail", args=[self.number])

    @property
    def post_payment_amount(self) -> Decimal:
        return self.refund_amount + self.credit_amount

    @property
    def kind(self) -> str:
        """Stripe's credit note `type`: pre_payment, post_payment or mixed."""
        if self.post_payment_amount and self.pre_payment_amount:
            return "mixed"
        return "post_payment" if self.post_payment_amount else "pre_payment"


class CreditNoteLine(models.Model):
    """A credited amount (net): all or part of an invoice line, or a free amount (no line)."""

    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="lines")
    invoice_line = models.ForeignKey(
        InvoiceLine, null=True, blank=True, on_delete=models.PROTECT, related_name="credit_lines"
    )
    position = models.PositiveSmallIntegerField(default=0)
    description = models.CharField(max_length=500)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    tax_rate = models.DecimalField(max_digits=5, decimal_places=2, default=ZERO)

    class Meta:
        ordering = ["credit_note", "position", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="cnline_amount_positive"),
        ]

    def __str__(self) -> str:
        return self.description


class CreditNoteTax(models.Model):
    """The tax reversed at one rate, with the original's name and note (reverse charge, ...)."""

    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="tax_lines")
    name = models.CharField(max_length=40)
    rate = models.DecimalField(max_digits=5, decimal_places=2)
    taxable_amount = models.DecimalField(max_digits=14, decimal_places=2)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["credit_note", "-rate"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="cntax_not_negative"),
        ]
        verbose_name = "credit note tax line"

    def __str__(self) -> str:
        return f"{self.name} {self.rate}%"


# --- Customer credit balance --------------------------------------------------------


class CustomerBalance(models.Model):
    """The customer's credit in one currency (Stripe's customer balance, as a positive
    credit). Its row lock serialises every movement; the ledger below explains it."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_balances")
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "currency"], name="balance_one_per_cur"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="balance_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.customer}: {self.amount} {self.currency} credit"


class BalanceTransactionKind(models.TextChoices):
    CREDIT_NOTE = "credit_note", "Credit note"
    APPLIED_TO_INVOICE = "applied_to_invoice", "Applied to invoice"
    UNAPPLIED_FROM_INVOICE = "unapplied_from_invoice", "Returned from a voided invoice"
    ADJUSTMENT = "adjustment", "Adjustment by staff"


class CustomerBalanceTransaction(models.Model):
    """One movement of a customer's credit: + adds credit, - uses it."""

    balance = models.ForeignKey(
        CustomerBalance, on_delete=models.PROTECT, related_name="transactions"
    )
    kind = models.CharField(max_length=24, choices=BalanceTransactionKind.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    ending_balance = models.DecimalField(max_digits=14, decimal_places=2)
    credit_note = models.ForeignKey(
        CreditNote, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    invoice = models.ForeignKey(
        Invoice,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="balance_transactions",
    )
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="baltx_amount_not_zero"),
            models.CheckConstraint(condition=Q(ending_balance__gte=0), name="baltx_end_not_neg"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount}"


# --- The invoice list's rollup ------------------------------------------------------

# Drafts have no issue date and no due date; the rollup's key columns are NOT NULL (so a
# plain unique index serves the upsert on both vendors), and this date stands for "none".
NO_DATE = datetime.date(1, 1, 1)


class InvoiceRollup(models.Model):
    """Counts and sums of a customer's invoices per currency, status, issue month and due
    month: what the invoice list's count and summary cards read instead of the invoices.

    Written only by database triggers on invoices_invoice (migration 0006, both vendors),
    in the same transaction as the invoice write, so no code path (a service, bulk_create,
    queryset.update, the admin, raw SQL) can leave it behind. `check_invoice_rollup`
    recomputes it from the invoices. Rows are never deleted by the triggers: a key whose
    invoices all moved on keeps a row of zeros.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16)
    # First day of the month of issue_date / due_date, or NO_DATE.
    issue_month = models.DateField()
    due_month = models.DateField()
    invoice_count = models.BigIntegerField(default=0)
    total = models.DecimalField(max_digits=18, decimal_places=2, default=ZERO)
    amount_paid = models.DecimalField(max_digits=18, decimal_places=2, default=ZERO)
    # Still owed: total - pre-payment credit notes - applied balance - amount paid (what
    # the Pending, Overdue and Written off cards add up).
    owed = models.DecimalField(max_digits=18, decimal_places=2, default=ZERO)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "currency", "status", "issue_month", "due_month"],
                name="invrollup_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.currency} {self.status} {self.issue_month}"


class InvoiceListVersion(models.Model):
    """A value that changes whenever anything the customer's invoice list shows changes:
    the key of the cached list body (billing.invoices.list_cache).

    Written only by database triggers (billing.invoices.triggers; migrations
    invoices.0007, payments.0009, collections.0003) in the same transaction as the write:
    invoices (the columns the list reads), their lines (the search), credit notes, reports
    (Under review), payments (Payment processing) and IP block prefixes (the search). No
    service, bulk write, queryset.update(), admin action or raw SQL can forget it. On
    PostgreSQL the value comes from a sequence (never handed out twice), on SQLite a random
    64-bit number; a customer without a row is never served from the cache.
    """

    # The reverse name is joined into the login's membership query
    # (settings.MEMBERSHIP_CUSTOMER_RELATED).
    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, primary_key=True, related_name="invoice_list_version"
    )
    version = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.version}"
