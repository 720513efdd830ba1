"""A ZIP of invoice PDFs, written as it is sent.

zipfile writes into a sink that is drained after every member, so the process
holds at most one PDF and its local header at a time, whatever the count. The
sink cannot seek, so zipfile writes sizes up front (writestr knows them) and the
central directory at the end. PDFs are already compressed: members are STORED.
"""

import io
import zipfile
from collections.abc import Iterable, Iterator

from billing.invoices.models import Invoice

from .pdf import credit_note_pdf_document, invoice_pdf_document


class _Sink(io.RawIOBase):
    """A write-only, non-seekable byte buffer that hands out what was written so far."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _member(day, filename: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(filename, date_time=(day.year, day.month, day.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def stream_invoice_zip(invoices: Iterable[Invoice]) -> Iterator[bytes]:
    """Yield a ZIP holding one `<number>.pdf` per invoice and per credit note of it (callers
    prefetch `credit_notes`), from the PDF cache (or rendered)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for invoice in invoices:
            document = invoice_pdf_document(invoice)
            day = invoice.issue_date or invoice.period_start
            archive.writestr(_member(day, document.filename), document.content)
            yield sink.drain()
            for note in invoice.credit_notes.all():
                document = credit_note_pdf_document(note)
                archive.writestr(_member(note.issue_date, document.filename), document.content)
                yield sink.drain()
    tail = sink.drain()
    if tail:
        yield tail
