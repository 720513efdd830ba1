"""Invoice receivers: a PDF for every state an invoice reaches; billing details checked
for whether the portal can tax them."""

from django.dispatch import receiver
from django.utils import timezone

from contracts.signals import billing_details_check
from core.queue import enqueue_on_commit

from . import signals, tasks
from .tax import billing_details_problem


@receiver(signals.invoice_status_changed, dispatch_uid="invoices.render_pdf")
def on_invoice_status_changed(sender, invoice_id: int, **kwargs) -> None:
    enqueue_on_commit(tasks.render_invoice_pdf, invoice_id)


@receiver(signals.invoices_issued, dispatch_uid="invoices.render_pdfs")
def on_invoices_issued(sender, invoice_ids: list[int], **kwargs) -> None:
    enqueue_on_commit(tasks.render_invoice_pdfs, invoice_ids)


@receiver(billing_details_check, dispatch_uid="invoices.billing_details_taxable")
def on_billing_details_check(sender, country: str, tax_id: str, is_business: bool, **kwargs):
    return billing_details_problem(
        country=country, tax_id=tax_id, is_business=is_business, on=timezone.localdate()
    )
