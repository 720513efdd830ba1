"""Invoice tasks of the billing calendar: each takes ids, calls one service, is safe twice."""

import datetime
import logging

from celery import shared_task
from django.utils import timezone

from core.queue import enqueue
from core.tasks import PortalTask

from . import signals
from .documents import pdf
from .models import Invoice
from .services import bill_contracts, chunked, due_contract_ids

logger = logging.getLogger(__name__)


@shared_task(base=PortalTask, name="invoices.run_billing")
def run_billing() -> int:
    """Hourly (config.celery): fan the contracts due today out to the workers, one message
    per chunk of BILLING_CHUNK_SIZE contracts. Returns how many contracts were queued.

    A chunk whose message is lost (broker down) is queued again by the next hourly run, as
    its contracts are still due; a chunk queued twice bills once (bill_contracts re-reads
    its contracts under their locks).
    """
    today = timezone.localdate()
    due = due_contract_ids(today)
    for chunk in chunked(due):
        enqueue(bill_contract_chunk, chunk, today.isoformat())
    return len(due)


@shared_task(base=PortalTask, name="invoices.bill_contract_chunk")
def bill_contract_chunk(contract_ids: list[int], day: str) -> int:
    """One chunk of the billing run. A lost database is raised and retried (PortalTask); the
    contracts it had billed are not billed again. Returns the number of invoices issued."""
    result = bill_contracts(contract_ids=contract_ids, today=datetime.date.fromisoformat(day))
    return len(result.invoice_ids)


@shared_task(base=PortalTask, name="invoices.invoices_issued")
def invoices_issued(invoice_ids: list[int]) -> None:
    """A chunk's issued invoices, told to every app in the worker (signals.invoices_issued).

    Receivers are isolated from each other (send_robust): one that fails is logged and the
    periodic sweeps find its work (charges: collections.retry_failed_charges; PDFs render
    on first download)."""
    for receiver, result in signals.invoices_issued.send_robust(
        sender=Invoice, invoice_ids=invoice_ids
    ):
        if isinstance(result, Exception):
            logger.error("receiver %r failed for %s invoices", receiver, len(invoice_ids),
                         exc_info=result)  # fmt: skip


@shared_task(base=PortalTask, name="invoices.render_invoice_pdfs")
def render_invoice_pdfs(invoice_ids: list[int]) -> None:
    """PDFs of a billing-run chunk. Each is rendered once (cached by state version), so the
    retry after a storage failure renders only the ones that were missing."""
    failed: OSError | None = None
    for invoice_id in invoice_ids:
        try:
            pdf.invoice_pdf_render(invoice_id=invoice_id)
        except OSError as exc:
            failed = exc
        except Exception:
            # One document that cannot be rendered must not keep the chunk's others from
            # theirs; its download renders on demand and shows the same error to staff.
            logger.exception("invoice %s: PDF not rendered", invoice_id)
    if failed is not None:
        raise failed


@shared_task(base=PortalTask, name="invoices.render_invoice_pdf")
def render_invoice_pdf(invoice_id: int) -> None:
    # Storage write failures (OSError) are retried; the download renders on demand meanwhile.
    pdf.invoice_pdf_render(invoice_id=invoice_id)
