"""Reads of the dunning calendar: what is overdue, what to remind, retry or cancel.

Every query here is indexed, so each beat tick can run any number of times, late or twice.
"""

import datetime

from django.conf import settings
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.invoices.models import Invoice, InvoiceStatus, overdue_q
from billing.payments.models import (
    ContractPaymentMethod,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
)
from contracts.models import ContractStatus, LeaseContract

from .models import InvoiceReport


def grace_period() -> datetime.timedelta:
    return datetime.timedelta(days=settings.GRACE_PERIOD_DAYS)


def not_extended(today: datetime.date, prefix: str = "contract__") -> Q:
    field_name = f"{prefix}grace_extended_until"
    return Q(**{f"{field_name}__isnull": True}) | Q(**{f"{field_name}__lte": today})


LIVE_STATUSES = (ContractStatus.ACTIVE, ContractStatus.PAST_DUE)


def overdue_contract_ids(*, today: datetime.date) -> QuerySet:
    """Contract ids of Open invoices whose due date + grace has come (the index-only step);
    an invoice under review, or with a bank debit processing, is never enforced."""
    return (
        Invoice.objects.filter(status=InvoiceStatus.OPEN, due_date__lte=today - grace_period())
        .exclude(contract_id=None)
        .filter(~paused())
        .values_list("contract_id", flat=True)
        .order_by("contract_id")
        .distinct()
    )


def grace_candidates(*, today: datetime.date) -> list[int]:
    """Ids of live contracts with an Open invoice whose cancellation date has come.

    Two steps on purpose: the overdue invoices come from the (status, due_date) index,
    then only those contracts are read by primary key. A single join let PostgreSQL hash
    the whole contracts table on every run, so the cost grew with the table (about 20 ms
    at 100,000 contracts with nothing overdue) instead of with the overdue contracts.
    """
    overdue = list(overdue_contract_ids(today=today))
    if not overdue:
        return []
    return list(
        LeaseContract.objects.filter(pk__in=overdue, status__in=LIVE_STATUSES)
        .filter(not_extended(today, prefix=""))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def past_due_candidates(*, today: datetime.date) -> QuerySet:
    return (
        Invoice.objects.filter(overdue_q(today), contract__status=ContractStatus.ACTIVE)
        .filter(~paused())
        .values_list("contract_id", flat=True)
        .order_by("contract_id")
        .distinct()
    )


def overdue_invoices_to_remind(*, today: datetime.date) -> QuerySet:
    """Open invoices past their due date on a live contract (or none), not under review."""
    return (
        Invoice.objects.filter(overdue_q(today))
        .filter(~paused())
        .exclude(contract__status=ContractStatus.CANCELLED)
        .select_related("customer", "contract")
        .order_by("pk")
    )


def cancellation_warnings_due(*, today: datetime.date) -> list[tuple[Invoice, int]]:
    """(invoice, days) for each Open invoice whose cancellation is at most `days` away.

    `days` is the most urgent warning that applies (3, then 1 by default), so a warning
    missed while the workers were down is not sent together with the next one.
    """
    warn_days = sorted(settings.CANCELLATION_WARNING_DAYS)
    horizon = today + datetime.timedelta(days=warn_days[-1]) - grace_period()
    invoices = (
        Invoice.objects.filter(
            status=InvoiceStatus.OPEN,
            due_date__lte=horizon,
            contract__status__in=LIVE_STATUSES,
        )
        .filter(
            Q(due_date__gt=today - grace_period()) | Q(contract__grace_extended_until__gt=today)
        )
        .filter(~paused())
        .select_related("customer", "contract")
        .order_by("pk")
    )
    due = []
    for invoice in invoices:
        days_left = (invoice.cancellation_date - today).days
        applicable = [d for d in warn_days if d >= days_left > 0]
        if applicable:
            due.append((invoice, applicable[0]))
    return due


def invoices_due_for_charge_retry(*, today: datetime.date) -> list[int]:
    """Open invoices whose automatic charges all failed and whose next retry day has come.

    Retries follow CHARGE_RETRY_DAYS (1, 3, 5) counted from the first failed automatic
    attempt; a cancelled contract's invoices are never charged again. An attempt released
    after waiting for 3-D Secure (cancelled, with the time it asked) counts as failed.
    """
    schedule = settings.CHARGE_RETRY_DAYS
    oldest = today - datetime.timedelta(days=schedule[-1] + 7)
    given_up = (PaymentStatus.FAILED, PaymentStatus.CANCELLED)
    recent_failures = Payment.objects.filter(
        kind=PaymentKind.AUTOMATIC, status__in=given_up, failed_at__date__gte=oldest
    ).values("invoice_id")
    rows = (
        Payment.objects.filter(
            kind=PaymentKind.AUTOMATIC,
            invoice_id__in=recent_failures,
            invoice__status=InvoiceStatus.OPEN,
        )
        .exclude(invoice__contract__status=ContractStatus.CANCELLED)
        .filter(~paused("invoice_id"))
        .values("invoice_id")
        .annotate(
            attempts=Count("pk"),
            unfinished=Count("pk", filter=~Q(status__in=given_up)),
            first_failed=Min("failed_at"),
            last_failed=Max("failed_at"),
        )
        .order_by("invoice_id")
    )
    due = []
    for row in rows:
        attempts = row["attempts"]
        if row["unfinished"] or attempts > len(schedule) or row["first_failed"] is None:
            continue
        first_day = timezone.localdate(row["first_failed"])
        if today >= first_day + datetime.timedelta(days=schedule[attempts - 1]):
            due.append(row["invoice_id"])
    return due


def invoices_to_charge_automatically(invoice_ids: list[int]) -> list[int]:
    """Of these new invoices, those whose customer has a default payment method (one query;
    the charge service decides the rest under the invoice's lock)."""
    has_default = PaymentMethod.objects.filter(
        customer_id=OuterRef("customer_id"), provider=settings.PAYMENT_PROVIDER, is_default=True
    )
    return list(
        Invoice.objects.filter(pk__in=invoice_ids, status=InvoiceStatus.OPEN)
        .filter(Exists(has_default))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# An automatic charge queued at finalisation normally runs within seconds; one that has
# not started (or stopped half-way) after this long is started (or resumed) by the sweep,
# which runs every 15 minutes (config.celery): a lost message costs at most half an hour.
# Resuming a charge whose own retry is still waiting is harmless: both send the same
# attempt under its idempotency key, and the provider's "still in progress" (409) leaves
# it pending (billing.payments.providers.ProviderBusy).
CHARGE_STARTED_WITHIN = datetime.timedelta(minutes=15)


def invoices_missing_an_automatic_charge(*, now: datetime.datetime) -> list[int]:
    """Open invoices of customers with a default card whose first automatic charge never
    ran (the queue was down at finalisation) or was left pending (a worker died, or the
    provider could not be reached), issued in the last CHARGE_RETRY_DAYS window."""
    stale = now - CHARGE_STARTED_WITHIN
    oldest = now - datetime.timedelta(days=settings.CHARGE_RETRY_DAYS[-1] + 7)
    has_default_card = PaymentMethod.objects.filter(
        customer_id=OuterRef("customer_id"), provider=settings.PAYMENT_PROVIDER, is_default=True
    )
    # A contract that names its own method is charged even without a default.
    has_contract_method = ContractPaymentMethod.objects.filter(
        contract_id=OuterRef("contract_id"), method__provider=settings.PAYMENT_PROVIDER
    )
    automatic = Payment.objects.filter(invoice_id=OuterRef("pk"), kind=PaymentKind.AUTOMATIC)
    return list(
        Invoice.objects.filter(
            status=InvoiceStatus.OPEN, created_at__lte=stale, created_at__gte=oldest
        )
        .exclude(contract__status=ContractStatus.CANCELLED)
        .filter(Exists(has_default_card) | Exists(has_contract_method))
        .filter(~paused())
        .filter(~Exists(automatic.exclude(status=PaymentStatus.PENDING, updated_at__lte=stale)))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# --- Reported invoices (disputes) -----------------------------------------------------


def under_review(outer: str = "pk") -> Exists:
    """The invoice named by OuterRef(outer) has a report staff have not resolved yet.

    While it holds, nothing in this module charges, reminds, marks past due or cancels
    for that invoice (the customer may still pay it).
    """
    unresolved = InvoiceReport.objects.filter(resolved_at__isnull=True)
    return Exists(unresolved.filter(invoice_id=OuterRef(outer)))


def payment_processing(outer: str = "pk") -> Exists:
    """The invoice named by OuterRef(outer) has a bank debit processing (its money arrives,
    or not, days later). Like a report under review, it pauses collection: nothing here
    charges, reminds, marks past due or cancels for it until the debit's outcome is known.
    """
    processing = Payment.objects.filter(status=PaymentStatus.PROCESSING)
    return Exists(processing.filter(invoice_id=OuterRef(outer)))


def invoices_with_payment_processing(invoice_ids: list[int]) -> set[int]:
    """Read in its own statement: under the invoice locks, it sees every debit committed
    before they were granted (payments record "processing" under the invoice lock)."""
    return set(
        Payment.objects.filter(
            invoice_id__in=invoice_ids, status=PaymentStatus.PROCESSING
        ).values_list("invoice_id", flat=True)
    )


def paused(outer: str = "pk") -> Q:
    """Collection waits for this invoice: under review, or a bank debit is processing."""
    return Q(under_review(outer)) | Q(payment_processing(outer))


def invoice_is_under_review(invoice_id: int) -> bool:
    """Read in its own statement: under a lock taken just before, it sees every report
    committed before the lock was granted."""
    return InvoiceReport.objects.filter(invoice_id=invoice_id, resolved_at__isnull=True).exists()


def invoices_under_review(invoice_ids: list[int]) -> set[int]:
    return set(
        InvoiceReport.objects.filter(
            invoice_id__in=invoice_ids, resolved_at__isnull=True
        ).values_list("invoice_id", flat=True)
    )


def report_refusal(
    invoice: Invoice, *, now: datetime.datetime, already_reported: bool
) -> str | None:
    """Why `invoice` cannot be reported now, in the customer's words; None when it can.

    A paid invoice stays reportable for DISPUTE_WINDOW_DAYS after it was paid; an unpaid
    one always is.
    """
    if invoice.status == InvoiceStatus.DRAFT:
        return _("This invoice is still a draft; it can be reported once it is issued.")
    if invoice.status == InvoiceStatus.VOID:
        return _("This invoice is void: there is nothing to pay, so nothing to report.")
    if already_reported:
        return _(
            "A problem with invoice %(number)s is already under review; "
            "we will write to you when it is resolved."
        ) % {"number": invoice.number}
    if invoice.status in (InvoiceStatus.PAID, InvoiceStatus.REFUND):
        settled = invoice.paid_at or now
        window = datetime.timedelta(days=settings.DISPUTE_WINDOW_DAYS)
        if settled + window < now:
            return _(
                "Invoice %(number)s was paid and settled more than %(days)s days ago and can "
                "no longer be reported here; please contact %(email)s."
            ) % {
                "number": invoice.number,
                "days": settings.DISPUTE_WINDOW_DAYS,
                "email": settings.SELLER["email"],
            }
    return None


def report_queue() -> QuerySet:
    """Unresolved reports, oldest first (the admin's default view)."""
    return (
        InvoiceReport.objects.filter(resolved_at__isnull=True)
        .select_related("invoice__customer", "reported_by")
        .order_by("created_at", "pk")
    )
