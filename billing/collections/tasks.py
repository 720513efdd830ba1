"""Collections tasks of the billing calendar: each takes ids, calls one service and is
safe to run twice."""

import datetime

from celery import shared_task
from django.utils import timezone

from billing.invoices.models import Invoice, InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import Payment, PaymentStatus, Refund, RefundStatus
from contracts.models import CancellationReason, ContractStatus, LeaseContract
from core.queue import enqueue
from core.tasks import RETRIED_ERRORS, PortalTask

from . import notifications, selectors, services

CALENDAR = "billing calendar"


@shared_task(base=PortalTask, name="collections.charge_invoice", retry_backoff=60)
def charge_invoice(invoice_id: int) -> None:
    """Charge the default card once; the service decides whether there is anything to do.

    A provider that cannot answer (ProviderUnavailable, also Stripe's "same request still
    in progress") leaves the attempt pending and the task is retried; the retry resumes
    that attempt under its idempotency key.

    Never while the invoice is under review: checked here, and again by the payment
    service under the invoice's lock through `hold`, so a report that commits between the
    two still stops the charge.
    """
    if selectors.invoice_is_under_review(invoice_id):
        return
    payments.invoice_charge_automatically(
        invoice_id=invoice_id, actor=CALENDAR, hold=held_for_review
    )


@shared_task(base=PortalTask, name="collections.charge_invoices", retry_backoff=60)
def charge_invoices(invoice_ids: list[int]) -> None:
    """The automatic charges of a billing-run chunk, one after another in this worker.

    A provider that cannot answer for one invoice does not hold up the others: the first
    such error is raised after the loop, so the task is retried; the retry skips what was
    charged meanwhile (no longer payable) and resumes pending attempts under their keys.
    """
    failed: Exception | None = None
    for invoice_id in invoice_ids:
        try:
            charge_invoice(invoice_id)
        except RETRIED_ERRORS as exc:
            failed = exc
    if failed is not None:
        raise failed


def held_for_review(invoice: Invoice) -> str | None:
    """The collections rule the payment service applies under the invoice's lock."""
    if selectors.invoice_is_under_review(invoice.pk):
        return f"Invoice {invoice} is under review; it is not charged automatically."
    return None


@shared_task(base=PortalTask, name="collections.retry_failed_charges")
def retry_failed_charges() -> int:
    """Retries on the failure schedule, and first charges that never ran or were left
    half-way (the queue was down, a worker died): nothing is left uncharged."""
    due = selectors.invoices_due_for_charge_retry(today=timezone.localdate())
    due += selectors.invoices_missing_an_automatic_charge(now=timezone.now())
    for invoice_id in due:
        enqueue(charge_invoice, invoice_id)
    return len(due)


@shared_task(base=PortalTask, name="collections.notify_report")
def notify_report(report_id: int) -> bool:
    return notifications.notify_report(report_id=report_id)


@shared_task(base=PortalTask, name="collections.notify_payment_failed")
def notify_payment_failed(payment_id: int) -> bool:
    return notifications.notify_payment_failed(payment_id=payment_id)


@shared_task(base=PortalTask, name="collections.notify_invoice_paid")
def notify_invoice_paid(invoice_id: int) -> bool:
    return notifications.notify_invoice_paid(invoice_id=invoice_id)


@shared_task(base=PortalTask, name="collections.notify_refund_failed")
def notify_refund_failed(refund_id: int) -> bool:
    return notifications.notify_staff_refund_failed(refund_id=refund_id)


@shared_task(base=PortalTask, name="collections.send_cancellation_notice")
def send_cancellation_notice(contract_id: int) -> bool:
    return notifications.notify_contract_cancelled(contract_id=contract_id)


@shared_task(base=PortalTask, name="collections.enforce_grace_period")
def enforce_grace_period() -> int:
    return len(services.grace_enforce().cancelled)


@shared_task(base=PortalTask, name="collections.mark_past_due")
def mark_past_due() -> int:
    return services.contracts_mark_past_due()


@shared_task(base=PortalTask, name="collections.send_reminders")
def send_reminders() -> int:
    """Every reminder that is due and not yet sent; also catches up e-mails whose queuing failed.

    Each e-mail goes out at most once (see billing.collections.notifications), so this may
    run at any time and any number of times.
    """
    today = timezone.localdate()
    recent = timezone.now() - datetime.timedelta(days=3)
    sent = 0
    overdue = notifications.not_notified(
        selectors.overdue_invoices_to_remind(today=today), notifications.INVOICE_OVERDUE
    )
    for invoice_id in overdue.values_list("pk", flat=True):
        sent += notifications.notify_invoice_overdue(invoice_id=invoice_id)
    for invoice, days in selectors.cancellation_warnings_due(today=today):
        sent += notifications.notify_cancellation_warning(invoice_id=invoice.pk, days=days)
    failed = Payment.objects.filter(status=PaymentStatus.FAILED, failed_at__gte=recent)
    for payment_id in notifications.not_notified(failed, notifications.PAYMENT_FAILED).values_list(
        "pk", flat=True
    ):
        sent += notifications.notify_payment_failed(payment_id=payment_id)
    refunds_failed = Refund.objects.filter(status=RefundStatus.FAILED, failed_at__gte=recent)
    for refund_id in notifications.not_notified(
        refunds_failed.exclude(failure_reason=""), notifications.REFUND_FAILED
    ).values_list("pk", flat=True):
        sent += notifications.notify_staff_refund_failed(refund_id=refund_id)
    paid = Invoice.objects.filter(status=InvoiceStatus.PAID, paid_at__gte=recent)
    for invoice_id in notifications.not_notified(paid, notifications.RECEIPT).values_list(
        "pk", flat=True
    ):
        sent += notifications.notify_invoice_paid(invoice_id=invoice_id)
    cancelled = LeaseContract.objects.filter(
        status=ContractStatus.CANCELLED,
        cancellation_reason=CancellationReason.NON_PAYMENT,
        cancelled_at__gte=recent,
    )
    for contract_id in notifications.not_notified(
        cancelled, notifications.CONTRACT_CANCELLED
    ).values_list("pk", flat=True):
        sent += notifications.notify_contract_cancelled(contract_id=contract_id)
    return sent
