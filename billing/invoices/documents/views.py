"""Invoice documents for logged-in members: one PDF, or a streamed ZIP of many."""

import logging
import re

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import parse_etags
from django.views.decorators.http import require_GET, require_POST

from billing.invoices.links import invoice_for_pay_token
from billing.invoices.models import DRAFT_REF_PREFIX
from billing.invoices.selectors import (
    credit_note_for_customer_or_404,
    invoice_for_customer_or_404,
    invoice_for_pdf_or_404,
    invoices_by_numbers,
)
from contracts.context import member_required

from .pdf import (
    InvoiceDocument,
    cached_etag,
    credit_note_etag,
    credit_note_pdf_document,
    credit_note_xrechnung,
    invoice_pdf_document,
    invoice_xrechnung,
    with_document_data,
)
from .zipstream import stream_invoice_zip

logger = logging.getLogger(__name__)

MAX_ZIP_INVOICES = 500
_SEPARATORS = re.compile(r"[\s,;]+")


def _etag_matches(request: HttpRequest, etag: str | None) -> bool:
    header = request.headers.get("If-None-Match")
    if not header or not etag:
        return False
    tags = parse_etags(header)
    return "*" in tags or etag in tags


def _not_modified(etag: str) -> HttpResponse:
    response = HttpResponse(status=304)
    response["ETag"] = etag
    response["Cache-Control"] = "private, no-cache"
    return response


@require_GET
@member_required()
def invoice_pdf(request: HttpRequest, number: str) -> HttpResponse:
    """Any member may download their customer's invoice; drafts come marked DRAFT."""
    return _pdf_response(request, invoice_for_pdf_or_404(request.customer, number))


@require_GET
def invoice_pdf_for_link(request: HttpRequest, number: str) -> HttpResponse:
    """The invoice's PDF for whoever holds its signed Pay online link (no login): the hosted
    invoice page's "Download PDF". The link names one issued invoice and nothing else."""
    invoice = invoice_for_pay_token(request.GET.get("token", ""), number=number)
    if invoice is None:
        raise Http404("No such invoice.")
    return _pdf_response(request, invoice)


def _pdf_response(request: HttpRequest, invoice) -> HttpResponse:
    etag = cached_etag(invoice)
    if _etag_matches(request, etag):
        return _not_modified(etag)
    try:
        document = invoice_pdf_document(invoice)
    except Exception:  # the person gets a clear message, never a 500 page
        logger.exception("PDF of invoice %s could not be produced", invoice.pk)
        return _refuse(
            request,
            f"The PDF of {invoice.ref} could not be produced just now. "
            "Please try again in a minute; if it keeps failing, contact billing support.",
            status=503,
        )
    return _document_response(request, document)


def _document_response(request: HttpRequest, document: InvoiceDocument) -> HttpResponse:
    if _etag_matches(request, document.etag):
        return _not_modified(document.etag)
    response = HttpResponse(document.content, content_type="application/pdf")
    response["Content-Length"] = str(document.size)
    response["ETag"] = document.etag
    response["Content-Disposition"] = f'attachment; filename="{document.filename}"'
    # Private: the document belongs to one customer; no-cache: revalidate with the ETag.
    response["Cache-Control"] = "private, no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@member_required()
def credit_note_pdf(request: HttpRequest, number: str) -> HttpResponse:
    """Any member may download their customer's credit notes (they never change)."""
    note = credit_note_for_customer_or_404(request.customer, number, light=True)
    etag = credit_note_etag(note)
    if _etag_matches(request, etag):
        return _not_modified(etag)
    try:
        document = credit_note_pdf_document(note)
    except Exception:  # the person gets a clear message, never a 500 page
        logger.exception("PDF of credit note %s could not be produced", note.pk)
        return _refuse(
            request,
            f"The PDF of {note.number} could not be produced just now. "
            "Please try again in a minute; if it keeps failing, contact billing support.",
            status=503,
        )
    return _document_response(request, document)


@require_GET
@member_required()
def invoice_xml(request: HttpRequest, number: str) -> HttpResponse:
    """The XRechnung (EN 16931, CII syntax) e-invoice beside the PDF, for any member."""
    invoice = invoice_for_customer_or_404(request.customer, number, light=True)
    if not invoice.has_einvoice:
        return _refuse(
            request,
            f"{invoice.ref} has no e-invoice: drafts are not invoices yet, and a void "
            "invoice must not be booked.",
            status=404,
        )
    try:
        xml = invoice_xrechnung(invoice)
    except Exception:  # the person gets a clear message, never a 500 page
        logger.exception("e-invoice of invoice %s could not be produced", invoice.pk)
        return _refuse(
            request,
            f"The e-invoice of {invoice.ref} could not be produced just now. "
            "Please try again in a minute; if it keeps failing, contact billing support.",
            status=503,
        )
    return _xml_response(xml, invoice.number)


@require_GET
@member_required()
def credit_note_xml(request: HttpRequest, number: str) -> HttpResponse:
    """The credit note's XRechnung (EN 16931, CII, type 381) beside its PDF, for any member."""
    note = credit_note_for_customer_or_404(request.customer, number, light=True)
    try:
        xml = credit_note_xrechnung(note)
    except Exception:  # the person gets a clear message, never a 500 page
        logger.exception("e-invoice of credit note %s could not be produced", note.pk)
        return _refuse(
            request,
            f"The e-invoice of {note.number} could not be produced just now. "
            "Please try again in a minute; if it keeps failing, contact billing support.",
            status=503,
        )
    return _xml_response(xml, note.number)


def _xml_response(xml: bytes, number: str) -> HttpResponse:
    response = HttpResponse(xml, content_type="application/xml; charset=utf-8")
    response["Content-Length"] = str(len(xml))
    response["Content-Disposition"] = f'attachment; filename="{number}.xml"'
    response["Cache-Control"] = "private, no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _refuse(request: HttpRequest, message: str, *, status: int, refs=()) -> HttpResponse:
    return render(
        request,
        "billing/pdf/download_refused.html",
        {"message": message, "refs": list(refs)},
        status=status,
    )


def _requested_refs(request: HttpRequest) -> list[str]:
    refs: list[str] = []
    for value in request.POST.getlist("numbers"):
        refs.extend(part for part in _SEPARATORS.split(value) if part)
    return list(dict.fromkeys(refs))


@require_POST
@member_required()
def invoice_download_zip(request: HttpRequest) -> HttpResponse:
    """POST numbers=... (repeated, or comma/space separated) -> streamed ZIP of their PDFs.

    All or nothing: a number that is not this customer's, or a draft, refuses the
    whole download with a message naming it, so nobody mistakes a partial ZIP for
    the full set.
    """
    refs = _requested_refs(request)
    if not refs:
        return _refuse(request, "Select at least one invoice to download.", status=400)
    if len(refs) > MAX_ZIP_INVOICES:
        return _refuse(
            request,
            f"You selected {len(refs)} invoices; a ZIP holds at most {MAX_ZIP_INVOICES}. "
            "Narrow the filter (e.g. by date) and download in parts.",
            status=400,
        )
    drafts = [ref for ref in refs if ref.startswith(DRAFT_REF_PREFIX)]
    if drafts:
        return _refuse(
            request,
            "Drafts are not final invoices and are not included in ZIP downloads; "
            "open a draft on its own to see its preview PDF.",
            status=400,
            refs=drafts,
        )
    # A ref with a NUL or other control character names no invoice (and PostgreSQL would
    # refuse it in a query): it is reported as unknown below.
    askable = [ref for ref in refs if ref.isprintable()]
    invoices = list(
        with_document_data(invoices_by_numbers(request.customer, askable)).order_by("number")
    )
    unknown = sorted(set(refs) - {inv.number for inv in invoices})
    if unknown:
        return _refuse(
            request,
            "These invoice numbers are not among your invoices; nothing was downloaded.",
            status=404,
            refs=unknown,
        )
    response = StreamingHttpResponse(stream_invoice_zip(invoices), content_type="application/zip")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="invoices-{stamp}.zip"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
