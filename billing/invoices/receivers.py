"""Every state an invoice reaches gets its PDF rendered (queued after commit)."""

from django.dispatch import receiver

from core.queue import enqueue_on_commit

from . import signals, tasks


@receiver(signals.invoice_status_changed, dispatch_uid="invoices.render_pdf")
def on_invoice_status_changed(sender, invoice_id: int, **kwargs) -> None:
    enqueue_on_commit(tasks.render_invoice_pdf, invoice_id)
