"""Invoice events the payments app acts on (queued after commit)."""

from django.dispatch import receiver

from billing.invoices import signals as invoice_signals
from billing.invoices.models import CreditNote, InvoiceStatus
from core.queue import enqueue_on_commit

from . import tasks


@receiver(invoice_signals.invoice_status_changed, dispatch_uid="payments.invoice_voided")
def on_invoice_status_changed(sender, invoice_id: int, new_status: str, **kwargs) -> None:
    if new_status == InvoiceStatus.VOID:
        # A voided invoice must not be paid: close its Pay online sessions, as a
        # cancelled contract does (money that still lands is refunded as a duplicate).
        enqueue_on_commit(tasks.expire_checkout_sessions, invoice_id)


@receiver(invoice_signals.credit_note_issued, dispatch_uid="payments.credit_note_refund")
def on_credit_note_issued(sender, credit_note_id: int, **kwargs) -> None:
    # Money a credit note returns to the original payment method is sent here, as payments
    # own the provider; the credit note itself is already issued and counted.
    if CreditNote.objects.filter(pk=credit_note_id, refund_amount__gt=0).exists():
        enqueue_on_commit(tasks.refund_credit_note, credit_note_id)
