"""A customer's report of a problem with an invoice (a dispute), and its review by staff."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from billing.invoices.models import Invoice


class ReportReason(models.TextChoices):
    WRONG_AMOUNT = "wrong_amount", _("Wrong amount")
    WRONG_PERIOD = "wrong_period", _("Wrong billing period")
    WRONG_TAX = "wrong_tax", _("Wrong tax or tax id")
    BLOCKS_NOT_RECEIVED = "blocks_not_received", _("IP blocks not received")
    OTHER = "other", _("Other")


class ReportStatus(models.TextChoices):
    OPEN = "open", _("Open")
    UNDER_REVIEW = "under_review", _("Under review")
    REJECTED = "rejected", _("Rejected")
    CORRECTED = "corrected", _("Corrected")


# The only place that says which report status may follow which.
REPORT_TRANSITIONS = {
    ReportStatus.OPEN: frozenset(
        {ReportStatus.UNDER_REVIEW, ReportStatus.REJECTED, ReportStatus.CORRECTED}
    ),
    ReportStatus.UNDER_REVIEW: frozenset({ReportStatus.REJECTED, ReportStatus.CORRECTED}),
    ReportStatus.REJECTED: frozenset(),
    ReportStatus.CORRECTED: frozenset(),
}
UNRESOLVED_STATUSES = (ReportStatus.OPEN, ReportStatus.UNDER_REVIEW)


class InvoiceReport(models.Model):
    """A report holds the invoice's collection while it is unresolved (resolved_at is null).

    "Unresolved" is spelled `resolved_at IS NULL` on purpose (a check constraint ties it to
    the status): billing.invoices reads the "Under review" flag through the relation name
    `reports` with that one condition, without importing this app or its status values.
    """

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="reports")
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reason = models.CharField(max_length=24, choices=ReportReason.choices)
    description = models.TextField(max_length=4000)
    expected_correction = models.TextField(max_length=2000, blank=True)
    status = models.CharField(
        max_length=16, choices=ReportStatus.choices, default=ReportStatus.OPEN
    )
    staff_message = models.TextField(
        blank=True, help_text="Sent to the customer with the decision."
    )
    credit_note_number = models.CharField(
        max_length=32, blank=True, help_text="The credit note that corrected the invoice, if any."
    )
    grace_until = models.DateField(
        null=True,
        blank=True,
        help_text="Once resolved: the contract is not cancelled for this invoice before this date.",
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = "reported invoice"
        constraints = [
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(resolved_at__isnull=True),
                name="report_one_unresolved_per_invoice",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status__in=UNRESOLVED_STATUSES, resolved_at__isnull=True)
                    | (~Q(status__in=UNRESOLVED_STATUSES) & Q(resolved_at__isnull=False))
                ),
                name="report_resolved_at_matches_status",
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(resolved_at__isnull=True),
                name="report_queue",
            ),
        ]

    def __str__(self) -> str:
        return f"Report #{self.pk}"

    @property
    def is_unresolved(self) -> bool:
        return self.resolved_at is None
