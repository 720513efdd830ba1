"""Invoice tasks of the billing calendar: each takes ids, calls one service, is safe twice."""

from celery import shared_task

from .documents import pdf
from .services import billing_run


@shared_task(name="invoices.run_billing")
def run_billing() -> int:
    result = billing_run()
    return len(result.invoice_ids)


@shared_task(
    name="invoices.render_invoice_pdf",
    autoretry_for=(OSError,),  # storage write failures; the download renders on demand meanwhile
    retry_backoff=60,
    max_retries=5,
)
def render_invoice_pdf(invoice_id: int) -> None:
    pdf.invoice_pdf_render(invoice_id=invoice_id)
