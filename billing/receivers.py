"""Domain events -> queued tasks. The signals are sent after commit; queuing goes
through on_commit anyway so a receiver fired inside a caller's transaction still
waits for it. A broker outage is logged, never raised (see tasks.enqueue)."""

from django.dispatch import receiver

from . import signals, tasks
from .models import InvoiceStatus


@receiver(signals.invoice_finalized, dispatch_uid="calendar.invoice_finalized")
def on_invoice_finalized(sender, invoice_id: int, **kwargs) -> None:
    # Its PDF is rendered by the status change to Open (below), like every later state.
    tasks.enqueue_on_commit(tasks.charge_invoice, invoice_id)


@receiver(signals.invoice_status_changed, dispatch_uid="calendar.invoice_status_changed")
def on_invoice_status_changed(sender, invoice_id: int, new_status: str, **kwargs) -> None:
    tasks.enqueue_on_commit(tasks.render_invoice_pdf, invoice_id)
    if new_status == InvoiceStatus.PAID:
        tasks.enqueue_on_commit(tasks.notify_invoice_paid, invoice_id)
    if new_status == InvoiceStatus.VOID:
        # A voided invoice must not be paid: close its Pay online sessions, as a
        # cancelled contract does (money that still lands is refunded as a duplicate).
        tasks.enqueue_on_commit(tasks.expire_checkout_sessions, invoice_id)


@receiver(signals.payment_failed, dispatch_uid="calendar.payment_failed")
def on_payment_failed(sender, payment_id: int, **kwargs) -> None:
    tasks.enqueue_on_commit(tasks.notify_payment_failed, payment_id)


@receiver(signals.refund_failed, dispatch_uid="calendar.refund_failed")
def on_refund_failed(sender, refund_id: int, **kwargs) -> None:
    tasks.enqueue_on_commit(tasks.notify_refund_failed, refund_id)
