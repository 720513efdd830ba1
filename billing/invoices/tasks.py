"""Invoice tasks of the billing calendar: each takes ids, calls one service, is safe twice."""

from celery import shared_task

from core.tasks import PortalTask

from .documents import pdf
from .services import billing_run


@shared_task(base=PortalTask, name="invoices.run_billing")
def run_billing() -> int:
    """Hourly (config.celery). Stops at a lost database and is retried (PortalTask); the
    contracts it billed before are not billed again."""
    result = billing_run()
    return len(result.invoice_ids)


@shared_task(base=PortalTask, name="invoices.render_invoice_pdf")
def render_invoice_pdf(invoice_id: int) -> None:
    # Storage write failures (OSError) are retried; the download renders on demand meanwhile.
    pdf.invoice_pdf_render(invoice_id=invoice_id)
