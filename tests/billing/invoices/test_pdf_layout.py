"""The invoice PDF's layout: every cell whole, in pypdf's and pdftotext's reading, numbers
under their headers, and what a German GmbH must print, for every tax case and language."""

import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.utils import translation

from billing.invoices.documents.content import line_description
from billing.invoices.documents.pdf import invoice_pdf_document
from billing.payments import services as invoice_services
from core import l10n
from tests.billing.invoices.document_cases import (
    CASES,
    STARTED,
    YEAR_END,
    case_invoice,
    layout_text,
    reader,
    words,
)
from tests.billing.invoices.pdf_helpers import has_mark, link_uris, png_of_first_page, squash

pytestmark = pytest.mark.django_db
LANGUAGES = ("en", "de")


def plain(text: str) -> str:
    """Thin and no-break spaces (Babel's separators) as the plain spaces extraction gives."""
    return text.replace("\u2009", " ").replace("\u202f", " ").replace("\u00a0", " ")


def _text(content: bytes) -> str:
    return squash(" ".join(p.extract_text() for p in reader(content).pages))


def _cells(invoice, language):
    """What each line's cells must read, in the document's language."""
    rows = []
    for line in invoice.lines.select_related("block").order_by("position"):
        period = ""
        if line.period_start:
            period = plain(l10n.period(line.period_start, line.period_end, language))
        with translation.override(language):
            description = plain(line_description(line))
        rows.append(
            {
                "description": description,
                "block": line.block.prefix if line.block else "-",
                "period": period,
                "qty": l10n.quantity(line.quantity, language),
                "rate": l10n.amount(line.unit_price, language),
                "amount": l10n.amount(line.amount, language),
            }
        )
    return rows


def _description_cells(layout: str, language: str) -> list[list[str]]:
    """The words of each line's Description cell in `pdftotext -layout`'s text: the columns
    between the Description and the Block header, on the row's first line and the lines it
    wraps onto (the next row, after a blank line, starts with its number under "#")."""
    lines = layout.splitlines()
    header_at = next(i for i, text in enumerate(lines) if re.match(r"\s*#\s", text))
    header = lines[header_at]
    start = header.index("Description" if language == "en" else "Beschreibung")
    end = header.index("Block")
    cells: list[list[str]] = []
    in_row = False
    for text in lines[header_at + 1 :]:
        if re.fullmatch(r"\s*\d+\s*", text[:start]):
            cells.append([])
            in_row = True
        elif not text.strip():
            in_row = False  # rows are a blank line apart
            continue
        elif not in_row:
            break  # the totals: the table has ended
        cells[-1] += text[start:end].split()
    return cells


@pytest.mark.parametrize("started", [STARTED, YEAR_END], ids=["september", "december"])
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("case_name", list(CASES))
def test_every_cell_is_whole_in_both_extractions(case_name, language, started, tmp_path):
    invoice = case_invoice(case_name, language, started)
    content = invoice_pdf_document(invoice).content
    text = plain(squash(" ".join(p.extract_text() for p in reader(content).pages)))
    layout = plain(layout_text(content, tmp_path, f"{case_name}-{language}"))

    rows = _cells(invoice, language)
    # A lease line's Description (prefix, size and period) is longer than its fixed-width
    # column and wraps by design (docs/decisions.md, "PDF layout"), so in the layout text it
    # is the cell's words in order across the lines it wraps onto, checked as exactly the
    # description's words: nothing missing, nothing from the Block column beside it. pypdf
    # reads a wrapped cell's lines one after the other, so there the whole row is one string
    # in reading order, number, Description, Block, Period, (HSN/SAC,) Qty, Rate, Amount.
    assert _description_cells(layout, language) == [r["description"].split() for r in rows]
    sac = f" {settings.INDIA_SAC_CODE}" if CASES[case_name].country == "IN" else ""
    for number, cells in enumerate(rows, start=1):
        row = (
            f"{number} {cells['description']} {cells['block']} {cells['period'] or '-'}{sac} "
            f"{cells['qty']} {cells['rate']} {cells['amount']}"
        )
        assert row in text, (row, text)
    for cells in rows:
        if cells["period"]:
            # The block and the period are two separate runs of text on one line, with
            # space between them: "185.100.100.0/22   28 Sept - 27 Oct 2026".
            pattern = rf"(?m)(^|\s){re.escape(cells['block'])}\s+{re.escape(cells['period'])}(\s|$)"
            assert re.search(pattern, layout), (cells, layout)
            assert f"{cells['block']} {cells['period']}" in text
        row = (
            rf"(?m)\s{re.escape(cells['qty'])}\s+{re.escape(cells['rate'])}"
            rf"\s+{re.escape(cells['amount'])}\s*$"
        )
        assert re.search(row, layout), (cells, layout)
    for value in (invoice.subtotal, invoice.tax, invoice.total):
        money = plain(l10n.money(value, invoice.currency, language))
        assert money in text and money in layout, money
    (uri,) = link_uris(content)
    assert urlsplit(uri).path == f"/invoices/{invoice.number}/pay/"
    assert uri in text.replace(" ", "")
    if CASES[case_name].country == "IN":
        assert "HSN/SAC" in layout
        assert len(re.findall(rf"\s{settings.INDIA_SAC_CODE}\s", layout)) == invoice.lines.count()
    else:
        assert "HSN/SAC" not in layout


@pytest.mark.parametrize("language", LANGUAGES)
def test_rate_and_amount_headers_stand_right_above_their_numbers(language, tmp_path):
    invoice = case_invoice("domestic", language)
    content = invoice_pdf_document(invoice).content
    page = words(content, tmp_path, language)
    rate_header = next(i for i, w in enumerate(page) if w[0] in ("Rate", "Preis"))
    amount_header = next(i for i, w in enumerate(page) if w[0] in ("Amount", "Betrag"))
    # Each header ends with the currency word; its right edge is the column's.
    rate_right, amount_right = page[rate_header + 1][3], page[amount_header + 1][3]
    assert page[rate_header + 1][0] == page[amount_header + 1][0] == "EUR"
    manual = next(line for line in invoice.lines.all() if line.quantity == 3)
    rate = next(w for w in page if w[0] == l10n.amount(manual.unit_price, language))
    amount = next(w for w in page if w[0] == l10n.amount(manual.amount, language))
    assert abs(rate[3] - rate_right) < 1.0, (rate, page[rate_header + 1])
    assert abs(amount[3] - amount_right) < 1.0, (amount, page[amount_header + 1])
    assert rate[3] < amount[1], "the rate and the amount overlap"
    # "Menge" is wider than "Qty": its column must hold it, or the header overflows to the
    # right of its numbers and touches "Preis" (it did at 8 mm).
    qty_header = next(w for w in page if w[0] in ("Qty", "Menge"))
    qty = max(  # on the rate's line, the last "3" before it (the first is the line's number)
        (w for w in page if w[0] == l10n.quantity(manual.quantity, language)),
        key=lambda w: (abs(w[2] - rate[2]) < 1.0, w[3] < rate[1], w[3]),
    )
    assert abs(qty[3] - qty_header[3]) < 1.0, (qty, qty_header)
    assert qty_header[3] < page[rate_header][1] - 5, "the Qty and Rate headers touch"


def test_contract_reference_countries_in_words_bank_and_gmbh_particulars():
    invoice = case_invoice("reverse_charge", "en")
    text = _text(invoice_pdf_document(invoice).content)
    seller = settings.SELLER
    assert f"Contract {invoice.contract.reference}" in text and "#1" not in text
    assert "Berlin Germany VAT id: DE811111111" in text
    assert "Austria VAT id: ATU13585627" in text
    assert "Your order PO-2026-0815" in text
    assert f"IBAN {'DE89 3704 0044 0532 0130 00'}" in text
    assert f"BIC {seller['bic']}" in text and seller["bank_name"] in text
    assert seller["register_court"] in text and seller["register_number"] in text
    assert "Managing directors: Erika Mustermann, Max Mustermann" in text
    assert f"Reference {invoice.number}" in text


def test_german_document_names_countries_in_german():
    invoice = case_invoice("reverse_charge", "de")
    content = invoice_pdf_document(invoice).content
    # Kept beside the English invoice-open.png (test_pdf.py) for people to look at.
    assert png_of_first_page(content, "invoice-open-de").stat().st_size > 1000
    text = plain(_text(content))
    assert "Deutschland" in text and "Österreich" in text
    assert "Germany" not in text and "Austria" not in text
    assert f"Rechnung {invoice.number}" in text
    assert "RECHNUNGSEMPFÄNGER" in text and "Leistungszeitraum 28.09. \u2013 27.10.2026" in text
    assert "Österreich USt-IdNr.: ATU13585627" in text
    assert "USt. 0 % auf 2.473,62 € 0,00 €" in text
    assert "Steuerschuldnerschaft des Leistungsempfängers" in text
    assert "Gesamtbetrag 2.473,62 €" in text
    assert "Zahlbar bis 12.10.2026 2.473,62 €" in text
    assert "Online bezahlen" in text and "Verwendungszweck" in text
    assert "Geschäftsführer: Erika Mustermann, Max Mustermann" in text
    assert "IPv4-Miete" in text and "(1.024 Adressen)" in text
    assert "Seite 1 von 1" in text
    assert "Invoice" not in text and "Reverse charge" not in text


def test_a_paid_german_invoice_is_stamped_in_german():
    invoice = case_invoice("domestic", "de")
    invoice_services.invoice_record_out_of_band_payment(invoice_id=invoice.pk, actor="staff")
    invoice.refresh_from_db()
    text = plain(_text(invoice_pdf_document(invoice).content))
    assert has_mark(text, "BEZAHLT")
    assert f"Am {l10n.date(invoice.paid_at, 'de')} vollständig bezahlt. Vielen Dank." in text
    assert "Bezahlt 2.943,61 €" in text
