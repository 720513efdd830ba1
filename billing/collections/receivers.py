"""Domain events -> queued tasks, and the API's report requests -> the report service.

The events are sent after commit; queuing goes through on_commit anyway so a receiver
fired inside a caller's transaction still waits for it. A broker outage is logged, never
raised (see core.queue.enqueue)."""

from django.dispatch import receiver

from billing.invoices import signals as invoice_signals
from billing.invoices.models import InvoiceStatus
from billing.payments import signals as payment_signals
from core.queue import enqueue_on_commit

from . import selectors, tasks
from .models import InvoiceReport
from .services import invoice_report_open


@receiver(invoice_signals.invoice_finalized, dispatch_uid="collections.invoice_finalized")
def on_invoice_finalized(sender, invoice_id: int, **kwargs) -> None:
    # Its PDF is rendered by the status change to Open (billing.invoices.receivers).
    enqueue_on_commit(tasks.charge_invoice, invoice_id)


@receiver(invoice_signals.invoices_issued, dispatch_uid="collections.invoices_issued")
def on_invoices_issued(sender, invoice_ids: list[int], **kwargs) -> None:
    # Sent in a worker, once per billing-run chunk: one charge task for the chunk's
    # invoices that have a card to charge (none is queued when no customer has one).
    chargeable = selectors.invoices_to_charge_automatically(invoice_ids)
    if chargeable:
        enqueue_on_commit(tasks.charge_invoices, chargeable)


@receiver(invoice_signals.invoice_status_changed, dispatch_uid="collections.invoice_paid")
def on_invoice_status_changed(sender, invoice_id: int, new_status: str, **kwargs) -> None:
    if new_status == InvoiceStatus.PAID:
        enqueue_on_commit(tasks.notify_invoice_paid, invoice_id)


@receiver(invoice_signals.invoice_report_requested, dispatch_uid="collections.report_requested")
def on_invoice_report_requested(
    sender,
    invoice_id: int,
    reason: str,
    description: str,
    expected_correction: str,
    user,
    **kwargs,
) -> InvoiceReport:
    """The API's "report a problem" (billing.api cannot import this app)."""
    return invoice_report_open(
        invoice_id=invoice_id,
        reason=reason,
        description=description,
        expected_correction=expected_correction,
        reported_by=user,
        actor=user,
    )


@receiver(payment_signals.payment_failed, dispatch_uid="collections.payment_failed")
def on_payment_failed(sender, payment_id: int, **kwargs) -> None:
    enqueue_on_commit(tasks.notify_payment_failed, payment_id)


@receiver(payment_signals.refund_failed, dispatch_uid="collections.refund_failed")
def on_refund_failed(sender, refund_id: int, **kwargs) -> None:
    enqueue_on_commit(tasks.notify_refund_failed, refund_id)
