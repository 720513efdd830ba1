"""Invoice events the payments app acts on (queued after commit)."""

from django.dispatch import receiver

from billing.invoices import signals as invoice_signals
from billing.invoices.models import InvoiceStatus
from core.queue import enqueue_on_commit

from . import tasks


@receiver(invoice_signals.invoice_status_changed, dispatch_uid="payments.invoice_voided")
def on_invoice_status_changed(sender, invoice_id: int, new_status: str, **kwargs) -> None:
    if new_status == InvoiceStatus.VOID:
        # A voided invoice must not be paid: close its Pay online sessions, as a
        # cancelled contract does (money that still lands is refunded as a duplicate).
        enqueue_on_commit(tasks.expire_checkout_sessions, invoice_id)
