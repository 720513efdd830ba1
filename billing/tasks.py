"""Billing calendar tasks: each takes ids, calls one service and is safe to run twice."""

import datetime
import logging

from celery import Task, shared_task
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from contracts.grace import (
    cancellation_warnings_due,
    invoices_due_for_charge_retry,
    invoices_missing_an_automatic_charge,
)
from contracts.models import ContractStatus

from . import notifications, payments
from .models import Invoice, InvoiceStatus, Payment, PaymentStatus, Refund, RefundStatus
from .pdf import documents
from .providers.base import ProviderUnavailable

logger = logging.getLogger(__name__)

CALENDAR = "billing calendar"


def enqueue(task: Task, *args) -> bool:
    """Queue `task` now; if the broker is down, log it and return False.

    Every piece of work queued here is also found by a periodic job's query, so a
    message that could not be sent is done by the next beat tick instead of lost,
    and the web request that triggered it still succeeds.
    """
    try:
        task.delay(*args)
    except (BrokerError, OSError) as exc:
        logger.warning(
            "could not queue %s%r (%s); the next beat tick picks it up", task.name, args, exc
        )
        return False
    return True


def enqueue_on_commit(task: Task, *args) -> None:
    transaction.on_commit(lambda: enqueue(task, *args))


@shared_task(name="billing.run_billing")
def run_billing() -> int:
    from .services import billing_run

    result = billing_run()
    return len(result.invoice_ids)


@shared_task(
    name="billing.charge_invoice",
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=300,
    retry_backoff_max=3600,
    max_retries=5,
)
def charge_invoice(invoice_id: int) -> None:
    """Charge the default card once; the service decides whether there is anything to do."""
    payments.invoice_charge_automatically(invoice_id=invoice_id, actor=CALENDAR)


@shared_task(name="billing.retry_failed_charges")
def retry_failed_charges() -> int:
    """Retries on the failure schedule, and first charges that never ran or were left
    half-way (the queue was down, a worker died): nothing is left uncharged."""
    due = invoices_due_for_charge_retry(today=timezone.localdate())
    due += invoices_missing_an_automatic_charge(now=timezone.now())
    for invoice_id in due:
        enqueue(charge_invoice, invoice_id)
    return len(due)


@shared_task(name="billing.reconcile_payments")
def reconcile_payments() -> int:
    return payments.payments_reconcile(actor=CALENDAR)


@shared_task(name="billing.release_stale_payment_actions")
def release_stale_payment_actions() -> int:
    """Cancel charges left waiting for 3-D Secure, so the next automatic charge can run."""
    return payments.payments_release_stale_actions(actor=CALENDAR)


@shared_task(
    name="billing.expire_checkout_sessions",
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=60,
    max_retries=5,
)
def expire_checkout_sessions(invoice_id: int) -> int:
    return payments.checkout_expire_for_invoice(invoice_id=invoice_id, actor=CALENDAR)


@shared_task(
    name="billing.render_invoice_pdf",
    autoretry_for=(OSError,),  # storage write failures; the download renders on demand meanwhile
    retry_backoff=60,
    max_retries=5,
)
def render_invoice_pdf(invoice_id: int) -> None:
    documents.invoice_pdf_render(invoice_id=invoice_id)


@shared_task(name="billing.notify_payment_failed")
def notify_payment_failed(payment_id: int) -> bool:
    return notifications.notify_payment_failed(payment_id=payment_id)


@shared_task(name="billing.notify_invoice_paid")
def notify_invoice_paid(invoice_id: int) -> bool:
    return notifications.notify_invoice_paid(invoice_id=invoice_id)


@shared_task(name="billing.notify_refund_failed")
def notify_refund_failed(refund_id: int) -> bool:
    return notifications.notify_staff_refund_failed(refund_id=refund_id)


@shared_task(name="billing.send_reminders")
def send_reminders() -> int:
    """Every reminder that is due and not yet sent; also catches up e-mails whose queuing failed.

    Each e-mail goes out at most once (see billing.notifications), so this may run at
    any time and any number of times.
    """
    from contracts.grace import overdue_invoices_to_remind
    from contracts.models import CancellationReason, LeaseContract

    today = timezone.localdate()
    recent = timezone.now() - datetime.timedelta(days=3)
    sent = 0
    overdue = notifications.not_notified(
        overdue_invoices_to_remind(today=today), notifications.INVOICE_OVERDUE
    )
    for invoice_id in overdue.values_list("pk", flat=True):
        sent += notifications.notify_invoice_overdue(invoice_id=invoice_id)
    for invoice, days in cancellation_warnings_due(today=today):
        sent += notifications.notify_cancellation_warning(invoice_id=invoice.pk, days=days)
    failed = Payment.objects.filter(status=PaymentStatus.FAILED, failed_at__gte=recent)
    for payment_id in notifications.not_notified(failed, notifications.PAYMENT_FAILED).values_list(
        "pk", flat=True
    ):
        sent += notifications.notify_payment_failed(payment_id=payment_id)
    paid = Invoice.objects.filter(status=InvoiceStatus.PAID, paid_at__gte=recent)
    for invoice_id in notifications.not_notified(paid, notifications.RECEIPT).values_list(
        "pk", flat=True
    ):
        sent += notifications.notify_invoice_paid(invoice_id=invoice_id)
    refunds_failed = Refund.objects.filter(status=RefundStatus.FAILED, failed_at__gte=recent)
    for refund_id in notifications.not_notified(
        refunds_failed.exclude(failure_reason=""), notifications.REFUND_FAILED
    ).values_list("pk", flat=True):
        sent += notifications.notify_staff_refund_failed(refund_id=refund_id)
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
