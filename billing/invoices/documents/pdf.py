"""Invoice PDFs: render with WeasyPrint, cache per invoice state, serve from the cache.

A final invoice's document is stored once per (invoice id, state_version) under
`invoices/pdf/<revision>/<id>/v<state_version>.pdf` with Django's storage API.
Every change a document shows bumps `state_version`, so a status change simply
names a new file; older versions stay as the record of what was sent.

Drafts are never cached: their lines may still change without a version bump,
so they are rendered on every request and marked DRAFT.

Writes are all-or-nothing as far as readers can tell: the PDF is rendered to
bytes first and only then saved under its final name; a failed save removes
whatever it left, and a reader re-checks the file's PDF header and trailer
before trusting it (a crash mid-write cannot be served as final).
"""

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import Prefetch, QuerySet
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from weasyprint import HTML
from weasyprint.urls import default_url_fetcher

from billing.invoices.links import pay_url
from billing.invoices.models import (
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
)

from . import content as doc
from . import einvoice

logger = logging.getLogger(__name__)

# Bump when the template changes in a way that must replace already stored documents.
# r3: credit notes and the applied balance in the sums.
# r4: credit notes in the customer's language, PDF/A-3 with their Factur-X XML.
TEMPLATE_REVISION = "r4"
_PDF_HEADER = b"%PDF-"
_PDF_TRAILER = b"%%EOF"


@dataclass(frozen=True)
class InvoiceDocument:
    """A rendered invoice PDF, ready to serve."""

    content: bytes
    filename: str
    etag: str
    storage_name: str | None  # None when it is not (or could not be) cached

    @property
    def size(self) -> int:
        return len(self.content)


def storage_name(invoice: Invoice) -> str:
    return f"invoices/pdf/{TEMPLATE_REVISION}/{invoice.pk}/v{invoice.state_version}.pdf"


def document_filename(invoice: Invoice) -> str:
    return f"{invoice.ref}.pdf"


def cached_etag(invoice: Invoice) -> str | None:
    """The ETag of a final invoice's current document, known without touching storage."""
    if invoice.status == InvoiceStatus.DRAFT:
        return None
    return f'"{TEMPLATE_REVISION}-{invoice.pk}-v{invoice.state_version}"'


def _content_etag(content: bytes) -> str:
    return f'"{hashlib.sha256(content).hexdigest()[:32]}"'


def _no_network_fetcher(url: str, *args, **kwargs) -> dict:
    """Invoices embed everything they need; nothing is fetched, least of all from the network."""
    if url.startswith("data:"):
        return default_url_fetcher(url, *args, **kwargs)
    raise ValueError(f"Invoice PDFs do not fetch external resources ({url}).")


def with_document_data(qs: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """Everything a document shows, in four queries however many invoices `qs` holds."""
    return qs.select_related("customer", "contract").prefetch_related(
        Prefetch("lines", queryset=InvoiceLine.objects.select_related("block")),
        "tax_lines",
        Prefetch(
            "credit_notes",
            queryset=with_credit_note_data(CreditNote.objects.order_by("number")),
        ),
    )


def _with_lines(invoice: Invoice) -> Invoice:
    """The invoice with its document data: as given if the caller prefetched it."""
    if "lines" in getattr(invoice, "_prefetched_objects_cache", {}):
        return invoice
    return with_document_data(Invoice.objects.all()).get(pk=invoice.pk)


def _status_mark(invoice: Invoice) -> dict | None:
    if invoice.status == InvoiceStatus.PAID:
        return {"label": _("PAID"), "css": "paid", "date": invoice.paid_at}
    if invoice.status == InvoiceStatus.VOID:
        return {"label": _("VOID"), "css": "void", "date": invoice.voided_at}
    if invoice.status == InvoiceStatus.REFUND:
        return {"label": _("REFUNDED"), "css": "refunded", "date": invoice.refunded_at}
    if invoice.status == InvoiceStatus.DRAFT:
        return {"label": _("DRAFT"), "css": "draft", "date": None}
    return None


def _with_text(line: InvoiceLine) -> InvoiceLine:
    line.text = doc.line_description(line)
    return line


def grouped_iban(iban: str) -> str:
    compact = iban.replace(" ", "")
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def render_invoice_html(invoice: Invoice) -> str:
    """The document's HTML, in the invoice's document language.

    `invoice` must come with lines and tax lines prefetched.
    """
    language = doc.language(invoice)
    with translation.override(language):
        return _render_html(invoice, language)


def _render_html(invoice: Invoice, language: str) -> str:
    tax_lines = list(invoice.tax_lines.all())
    line_notes = {t.note for t in tax_lines if t.note}
    buyer = doc.buyer(invoice)
    context = {
        "language": language,
        "invoice": invoice,
        "seller": settings.SELLER,
        "iban": grouped_iban(settings.SELLER["iban"]),
        "bill_to": buyer,
        "references": doc.references(invoice),
        "contract_reference": invoice.contract.reference if invoice.contract_id else "",
        "lines": [_with_text(line) for line in invoice.lines.all()],
        "tax_lines": tax_lines,
        "tax_note": invoice.tax_note if invoice.tax_note not in line_notes else "",
        "is_draft": invoice.status == InvoiceStatus.DRAFT,
        "mark": _status_mark(invoice),
        "pay_url": pay_url(invoice) if invoice.number and invoice.is_payable else "",
        "amount_due": invoice.amount_remaining,
        "payment_terms_days": settings.PAYMENT_TERMS_DAYS,
        "credit_notes": list(invoice.credit_notes.all()),
        # Indian GST invoices name the service's SAC code on every line.
        "show_sac": buyer.country == "IN",
        "sac_code": settings.INDIA_SAC_CODE,
        # CSS strings cannot hold template tags; the page footer's words come in here.
        "page_label": _("Page"),
        "of_label": _("of"),
    }
    return render_to_string("billing/pdf/invoice.html", context)


def html_to_pdf(html: str, *, variant: str | None = None) -> bytes:
    """WeasyPrint with the documents' rules: nothing fetched, templates/billing/pdf as base.
    Receipts (billing.payments) render through here too, so every document looks alike."""
    document = HTML(
        string=html,
        base_url=str(settings.BASE_DIR / "templates" / "billing" / "pdf") + "/",
        url_fetcher=_no_network_fetcher,
    )
    return document.write_pdf(pdf_variant=variant) if variant else document.write_pdf()


def render_invoice_pdf_bytes(invoice: Invoice) -> bytes:
    """PDF/A-3b; an issued invoice carries its Factur-X (EN 16931) XML as factur-x.xml."""
    pdf = html_to_pdf(render_invoice_html(invoice), variant="pdf/a-3b")
    if not einvoice.has_einvoice(invoice):
        return pdf
    language = doc.language(invoice)
    with translation.override(language):
        return einvoice.embed_in_pdf(pdf, einvoice.build_xml(invoice), invoice, lang=language)


def invoice_xrechnung(invoice: Invoice) -> bytes:
    """The XRechnung (CII) XML of an issued invoice; raises ValueError for one without."""
    return einvoice.build_xml(_with_lines(invoice), guideline=einvoice.XRECHNUNG_CII)


def _looks_complete(content: bytes) -> bool:
    return content.startswith(_PDF_HEADER) and _PDF_TRAILER in content[-1024:]


def _read_cached(name: str) -> bytes | None:
    try:
        with default_storage.open(name, "rb") as fh:
            content = fh.read()
    except FileNotFoundError:
        return None
    except OSError:
        logger.exception("invoice PDF %s could not be read; rendering again", name)
        return None
    if not _looks_complete(content):
        logger.error("invoice PDF %s is incomplete; discarding it", name)
        _delete_quietly(name)
        return None
    return content


def _delete_quietly(name: str) -> None:
    try:
        default_storage.delete(name)
    except Exception:  # cleanup must never hide the original problem
        logger.exception("could not remove %s", name)


def _store(name: str, content: bytes) -> bool:
    """Save under the final name; on any failure leave nothing behind. True when stored."""
    try:
        saved = default_storage.save(name, ContentFile(content))
    except Exception:  # any storage backend error; the caller still gets bytes
        logger.exception("storing invoice PDF %s failed; it will be rendered again", name)
        _delete_quietly(name)
        return False
    if saved != name:
        # Another worker stored the same version first; theirs is as good as ours.
        _delete_quietly(saved)
    return True


def invoice_pdf_render(*, invoice_id: int) -> str:
    """Render the invoice's current state and store it; return the storage name.

    Idempotent: when the file for (id, state_version) exists, it is not rendered
    again. Drafts are not stored (their content can change without a version bump):
    for a draft this returns "" and stores nothing. Meant for a Celery task after
    finalisation and after every status change.
    """
    invoice = Invoice.objects.only("id", "status", "state_version").get(pk=invoice_id)
    if invoice.status == InvoiceStatus.DRAFT:
        return ""
    name = storage_name(invoice)
    if _read_cached(name) is not None:
        return name
    invoice = _with_lines(invoice)
    name = storage_name(invoice)  # the version it has now, if it moved meanwhile
    content = render_invoice_pdf_bytes(invoice)
    if not _store(name, content):
        raise OSError(f"Could not store {name}.")
    return name


def invoice_pdf_document(invoice: Invoice) -> InvoiceDocument:
    """The invoice's current document: from the cache, or rendered (and cached) on demand.

    Costs no query on a cache hit. A storage failure never reaches the person: they
    get the freshly rendered bytes, and nothing is cached.
    """
    filename = document_filename(invoice)
    if invoice.status == InvoiceStatus.DRAFT:
        content = render_invoice_pdf_bytes(_with_lines(invoice))
        return InvoiceDocument(content, filename, _content_etag(content), None)
    name = storage_name(invoice)
    etag = cached_etag(invoice)
    content = _read_cached(name)
    if content is not None:
        return InvoiceDocument(content, filename, etag, name)
    fresh = _with_lines(invoice)
    if fresh is not invoice and fresh.state_version != invoice.state_version:
        # The invoice moved on while we looked; serve (and cache) what it is now.
        return invoice_pdf_document(fresh)
    content = render_invoice_pdf_bytes(fresh)
    stored = _store(name, content)
    return InvoiceDocument(content, filename, etag, name if stored else None)


# --- Credit notes -------------------------------------------------------------------
#
# A credit note never changes once issued, so its document is rendered once and stored
# under its id; it shows the invoice's issued snapshot of the customer.


def credit_note_storage_name(note: CreditNote) -> str:
    return f"credit-notes/pdf/{TEMPLATE_REVISION}/{note.pk}.pdf"


def credit_note_etag(note: CreditNote) -> str:
    return f'"cn-{TEMPLATE_REVISION}-{note.pk}"'


def with_credit_note_data(qs: QuerySet[CreditNote]) -> QuerySet[CreditNote]:
    return qs.select_related("invoice__customer", "invoice__contract", "customer").prefetch_related(
        Prefetch("lines", queryset=CreditNoteLine.objects.select_related("invoice_line__block")),
        "tax_lines",
    )


def render_credit_note_html(note: CreditNote) -> str:
    """The credit note's HTML in its invoice's document language (the customer's as billed)."""
    language = doc.language(note.invoice)
    with translation.override(language):
        tax_lines = list(note.tax_lines.all())
        line_notes = {t.note for t in tax_lines if t.note}
        lines = []
        for line in note.lines.all():
            line.text = doc.credit_line_description(line)
            original = line.invoice_line
            line.block_prefix = original.block.prefix if original and original.block_id else ""
            line.period_start = (original and original.period_start) or note.invoice.period_start
            line.period_end = (original and original.period_end) or note.invoice.period_end
            lines.append(line)
        buyer = doc.buyer(note.invoice)
        return render_to_string(
            "billing/pdf/credit_note.html",
            {
                "language": language,
                "note": note,
                "invoice": note.invoice,
                "seller": settings.SELLER,
                "iban": grouped_iban(settings.SELLER["iban"]),
                "bill_to": buyer,
                "references": doc.references(note.invoice),
                "contract_reference": (
                    note.invoice.contract.reference if note.invoice.contract_id else ""
                ),
                "lines": lines,
                "tax_lines": tax_lines,
                "tax_note": note.tax_note if note.tax_note not in line_notes else "",
                "show_sac": buyer.country == "IN",
                "sac_code": settings.INDIA_SAC_CODE,
                "page_label": _("Page"),
                "of_label": _("of"),
            },
        )


def render_credit_note_pdf_bytes(note: CreditNote) -> bytes:
    """PDF/A-3b carrying the credit note's Factur-X (EN 16931, type 381) XML."""
    pdf = html_to_pdf(render_credit_note_html(note), variant="pdf/a-3b")
    language = doc.language(note.invoice)
    with translation.override(language):
        xml = einvoice.build_credit_note_xml(note)
        return einvoice.embed_in_pdf(pdf, xml, note, lang=language)


def _with_credit_note_data(note: CreditNote) -> CreditNote:
    if "lines" in getattr(note, "_prefetched_objects_cache", {}):
        return note
    return with_credit_note_data(CreditNote.objects.all()).get(pk=note.pk)


def credit_note_xrechnung(note: CreditNote) -> bytes:
    """The XRechnung (CII) XML of a credit note."""
    return einvoice.build_credit_note_xml(
        _with_credit_note_data(note), guideline=einvoice.XRECHNUNG_CII
    )


def credit_note_pdf_document(note: CreditNote) -> InvoiceDocument:
    """The credit note's document, from storage or rendered and stored on first use."""
    name = credit_note_storage_name(note)
    filename = f"{note.number}.pdf"
    etag = credit_note_etag(note)
    content = _read_cached(name)
    if content is not None:
        return InvoiceDocument(content, filename, etag, name)
    content = render_credit_note_pdf_bytes(_with_credit_note_data(note))
    stored = _store(name, content)
    return InvoiceDocument(content, filename, etag, name if stored else None)
