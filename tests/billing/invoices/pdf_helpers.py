"""Shared helpers for the PDF and ZIP tests: text, links and fixtures built through services."""

import datetime
import io
import re
import subprocess
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from pypdf import PdfReader

from billing.invoices import services
from billing.invoices.models import InvoiceLine
from tests.factories import make_invoice

ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"


def reader(content: bytes) -> PdfReader:
    return PdfReader(io.BytesIO(content))


def squash(text: str) -> str:
    return " ".join(text.split())


def pdf_text(content: bytes) -> str:
    return squash(" ".join(page.extract_text() for page in reader(content).pages))


def has_mark(text: str, mark: str) -> bool:
    """The status stamp as a word of its own (extraction may glue the stamp's date to it)."""
    return re.search(rf"(?<![A-Za-z]){mark}(?![a-z])", text) is not None


def link_uris(content: bytes) -> list[str]:
    uris = []
    for page in reader(content).pages:
        for ref in page.get("/Annots") or []:
            annot = ref.get_object()
            action = annot.get("/A")
            if action is not None and "/URI" in action:
                uris.append(str(action["/URI"]))
    return uris


def png_of_first_page(content: bytes, name: str) -> Path:
    """Page 1 as PNG under test-artifacts/ (kept for people to look at)."""
    ARTIFACTS.mkdir(exist_ok=True)
    pdf = ARTIFACTS / f"{name}.pdf"
    pdf.write_bytes(content)
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "50",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(pdf),
            str(ARTIFACTS / name),
        ],
        check=True,
        timeout=60,
    )
    return ARTIFACTS / f"{name}.png"


def invoice_with_lines(customer, count: int, *, description: str | None = None, finalize=True):
    """A contract's invoice topped up to `count` lines, then (optionally) finalised."""
    draft = make_invoice(customer=customer, finalize=False)
    first = draft.lines.get()
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=draft,
            position=i,
            description=description or f"Extra service item {i:03d}",
            period_start=first.period_start,
            period_end=first.period_end,
            quantity=Decimal("1"),
            unit_price=Decimal("1.50"),
            amount=Decimal("1.50"),
        )
        for i in range(1, count)
    )
    draft.subtotal = draft.total = first.amount + Decimal("1.50") * (count - 1)
    draft.save(update_fields=["subtotal", "total"])
    if not finalize:
        draft.refresh_from_db()
        return draft
    return services.invoice_finalize(
        invoice_id=draft.pk, actor="test", today=datetime.date(2026, 1, 1)
    )
