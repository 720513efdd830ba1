"""Credit note documents: a PDF/A-3 in the customer's language carrying an EN 16931 credit
note (type 381) that names the invoice it corrects, and its XRechnung beside it, for every
tax case in both languages."""

import re
from decimal import Decimal

import facturx
import pytest
from django.urls import reverse

from billing.invoices.documents import einvoice
from billing.invoices.documents.pdf import (
    credit_note_pdf_document,
    credit_note_xrechnung,
    invoice_pdf_document,
)
from contracts.models import Role
from core import l10n
from tests.billing.invoices.document_cases import (
    CASES,
    case_credit_note,
    case_free_credit_note,
    embedded_xml,
    layout_text,
    reader,
    xml_amount,
    xml_values,
)
from tests.billing.invoices.pdf_helpers import squash
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db
LANGUAGES = ("en", "de")
TRADE_TAX = ".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax"
LINE_TAX = ".//ram:SpecifiedLineTradeSettlement/ram:ApplicableTradeTax"
PRECEDING = ".//ram:ApplicableHeaderTradeSettlement/ram:InvoiceReferencedDocument"


def plain(text: str) -> str:
    return text.replace("\u2009", " ").replace("\u202f", " ").replace("\u00a0", " ")


def _cells(note, language):
    rows = []
    for line in note.lines.select_related("invoice_line__block").order_by("position"):
        original = line.invoice_line
        start = (original and original.period_start) or note.invoice.period_start
        end = (original and original.period_end) or note.invoice.period_end
        rows.append(
            {
                "block": original.block.prefix if original and original.block_id else "-",
                "period": plain(l10n.period(start, end, language)),
                "rate": plain(l10n.percent(line.tax_rate, language)),
                "amount": "-" + l10n.amount(line.amount, language),
            }
        )
    return rows


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("case_name", list(CASES))
def test_every_cell_whole_amounts_and_the_embedded_credit_note(case_name, language, tmp_path):
    case = CASES[case_name]
    note = case_credit_note(case_name, language)
    invoice = note.invoice
    content = credit_note_pdf_document(note).content
    text = plain(squash(" ".join(p.extract_text() for p in reader(content).pages)))
    layout = plain(layout_text(content, tmp_path, f"cn-{case_name}-{language}"))

    rows = _cells(note, language)
    assert len(rows) == 3
    for cells in rows:
        pattern = rf"(?m)(^|\s){re.escape(cells['block'])}\s+{re.escape(cells['period'])}(\s|$)"
        assert re.search(pattern, layout), (cells, layout)
        if cells["block"] != "-":
            assert f"{cells['block']} {cells['period']}" in text, (cells, text)
        # pdftotext -layout drops the narrow no-break space of "0 %"; the cell is whole.
        rate = re.escape(cells["rate"]).replace("\\ ", r"\s?")
        row = rf"(?m)\s{rate}\s+{re.escape(cells['amount'])}\s*$"
        assert re.search(row, layout), (cells, layout)
    for value in (note.subtotal, note.tax, note.total):
        money = ("-" if value else "") + plain(l10n.money(value, note.currency, language))
        assert money in text and money in layout, money
    heading = {"en": "Credit note", "de": "Rechnungskorrektur"}[language]
    assert f"{heading} {note.number}" in text
    day = plain(l10n.date(invoice.issue_date, language))
    corrects = {"en": f"Corrects invoice {invoice.number} of {day}."}
    corrects["de"] = f"Korrigiert die Rechnung {invoice.number} vom {day}."
    assert corrects[language] in text

    xml = embedded_xml(content)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    assert xml_values(xml, ".//rsm:ExchangedDocument/ram:TypeCode") == ["381"]
    assert xml_values(xml, ".//rsm:ExchangedDocument/ram:ID") == [note.number]
    assert xml_values(xml, f"{PRECEDING}/ram:IssuerAssignedID") == [invoice.number]
    assert xml_values(xml, f"{PRECEDING}/ram:FormattedIssueDateTime/qdt:DateTimeString") == [
        f"{invoice.issue_date:%Y%m%d}"
    ]
    assert xml_amount(xml, "LineTotalAmount") == note.subtotal
    assert xml_amount(xml, "TaxBasisTotalAmount") == note.subtotal
    assert xml_amount(xml, "TaxTotalAmount") == note.tax
    assert xml_amount(xml, "GrandTotalAmount") == note.total
    assert xml_amount(xml, "DuePayableAmount") == note.total
    assert xml_values(xml, ".//ram:InvoiceCurrencyCode") == [case.currency]
    line_totals = xml_values(xml, ".//ram:SpecifiedTradeSettlementLineMonetarySummation/*")
    assert [Decimal(v) for v in line_totals] == [line.amount for line in note.lines.all()]
    assert set(xml_values(xml, f"{TRADE_TAX}/ram:CategoryCode")) == {case.category}
    assert set(xml_values(xml, f"{LINE_TAX}/ram:CategoryCode")) == {case.category}
    (tax,) = note.tax_lines.all()
    assert [Decimal(v) for v in xml_values(xml, f"{TRADE_TAX}/ram:BasisAmount")] == [
        tax.taxable_amount
    ]
    assert [Decimal(v) for v in xml_values(xml, f"{TRADE_TAX}/ram:CalculatedAmount")] == [
        tax.amount
    ]
    rates = xml_values(xml, f"{TRADE_TAX}/ram:RateApplicablePercent")
    if case.category == "O":
        assert rates == []
        assert xml_values(xml, f"{TRADE_TAX}/ram:ExemptionReasonCode") == ["VATEX-EU-O"]
    else:
        assert [Decimal(r) for r in rates] == [Decimal(case.rate)]
    if case.category == "AE":
        assert xml_values(xml, f"{TRADE_TAX}/ram:ExemptionReasonCode") == ["VATEX-EU-AE"]
    # The credit is set off or kept as credit, never paid to the seller's account.
    assert xml_values(xml, ".//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode") == ["97"]
    assert xml_values(xml, ".//ram:PayeePartyCreditorFinancialAccount/ram:IBANID") == []


@pytest.mark.parametrize("case_name", list(CASES))
def test_a_free_amount_credit_note_reconciles_in_its_xml(case_name):
    note = case_free_credit_note(case_name, "de")
    xml = credit_note_xrechnung(note)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    assert xml_values(xml, ".//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID") == [
        einvoice.XRECHNUNG_CII
    ]
    assert xml_amount(xml, "GrandTotalAmount") == note.total == Decimal("123.45")
    assert xml_amount(xml, "TaxTotalAmount") == note.tax
    (name,) = xml_values(xml, ".//ram:SpecifiedTradeProduct/ram:Name")
    assert name == f"Entgeltminderung zu Rechnung {note.invoice.number}"


def test_a_german_credit_note_says_everything_in_german(tmp_path):
    note = case_credit_note("reverse_charge", "de")
    content = credit_note_pdf_document(note).content
    text = plain(squash(" ".join(p.extract_text() for p in reader(content).pages)))
    assert "Österreich USt-IdNr.: ATU13585627" in text
    # pypdf reads the kerned "Te" as "T e"; pdftotext reads it as printed.
    assert "Teilbetrag: IPv4-Miete" in layout_text(content, tmp_path, "rc-de")
    assert "(1.024 Adressen)" in text
    assert "Steuerschuldnerschaft des Leistungsempfängers" in text
    assert "Belegdatum" in text and "Ursprüngliche Rechnung" in text
    assert "Geschäftsführer: Erika Mustermann, Max Mustermann" in text
    assert "Seite 1 von 1" in text
    for english in ("Credit note", "Reverse charge", "Part of", "Total credited", "Page"):
        assert english not in text, english
    xml = embedded_xml(content)
    (reason,) = xml_values(xml, f"{TRADE_TAX}/ram:ExemptionReason")
    assert reason.startswith("Steuerschuldnerschaft des Leistungsempfängers")
    assert "Grund: Block delivered late; rDNS zone not set up" in xml_values(
        xml, ".//rsm:ExchangedDocument/ram:IncludedNote/ram:Content"
    )


def test_the_invoice_pdf_names_its_credit_note_in_the_same_words():
    note = case_credit_note("domestic", "de")
    note.invoice.refresh_from_db()
    text = plain(squash(" ".join(p.extract_text() for p in reader(
        invoice_pdf_document(note.invoice).content).pages)))  # fmt: skip
    assert f"Rechnungskorrektur {note.number} vom" in text


# --- The XRechnung download ------------------------------------------------------------


@pytest.fixture
def viewer_client(client):
    def login(customer):
        client.force_login(MembershipFactory(customer=customer, role=Role.VIEWER).user)
        return client

    return login


def test_credit_note_xrechnung_download_and_link(viewer_client):
    note = case_credit_note("domestic", "en")
    client = viewer_client(note.customer)
    url = reverse("invoices:credit-note-xml", args=[note.number])

    response = client.get(url)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{note.number}.xml"'
    xml = response.content
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    assert xml_values(xml, ".//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID") == [
        einvoice.XRECHNUNG_CII
    ]
    assert xml_values(xml, ".//rsm:ExchangedDocument/ram:TypeCode") == ["381"]
    assert xml_values(xml, f"{PRECEDING}/ram:IssuerAssignedID") == [note.invoice.number]
    assert xml_values(xml, ".//ram:BuyerReference") == ["04011000-1234512345-06"]
    assert xml_amount(xml, "GrandTotalAmount") == note.total
    detail = client.get(reverse("invoices:credit-note-detail", args=[note.number]))
    assert f'href="{url}"' in detail.content.decode()


def test_a_failing_credit_note_build_is_a_clear_503(viewer_client, monkeypatch):
    note = case_credit_note("oss", "en")
    monkeypatch.setattr(einvoice, "_build", lambda *a: 1 / 0)
    response = viewer_client(note.customer).get(
        reverse("invoices:credit-note-xml", args=[note.number])
    )
    assert response.status_code == 503
    assert "could not be produced" in response.content.decode()


# --- PDF/A-3 (what can be checked without a PDF/A validator; docs/decisions.md) ----------


def _fonts(page) -> list:
    fonts = []
    for ref in (page["/Resources"].get("/Font") or {}).values():
        font = ref.get_object()
        for descendant in font.get("/DescendantFonts") or []:
            fonts.append(descendant.get_object())
        fonts.append(font)
    return [f for f in fonts if "/FontDescriptor" in f]


def assert_pdf_a3b(content: bytes, *, language: str, attachment: bool) -> None:
    pdf = reader(content)
    assert not pdf.is_encrypted and "/Encrypt" not in pdf.trailer
    assert "/ID" in pdf.trailer
    catalog = pdf.trailer["/Root"]
    xmp = catalog["/Metadata"].get_object().get_data().decode()
    assert re.search(r"pdfaid:part(>|=\")3", xmp), xmp
    assert re.search(r"pdfaid:conformance(>|=\")B", xmp), xmp
    assert catalog["/Lang"] == language
    (intent,) = [i.get_object() for i in catalog["/OutputIntents"]]
    assert intent["/S"] == "/GTS_PDFA1"
    assert intent["/DestOutputProfile"].get_object().get_data()[36:40] == b"acsp"  # ICC
    fonts = [f for page in pdf.pages for f in _fonts(page)]
    assert fonts
    for font in fonts:
        descriptor = font["/FontDescriptor"].get_object()
        assert {"/FontFile", "/FontFile2", "/FontFile3"} & set(descriptor), font["/BaseFont"]
    specs = [ref.get_object() for ref in catalog.get("/AF") or []]
    if not attachment:
        assert specs == [] and not pdf.attachments
        return
    (spec,) = specs
    assert spec["/F"] == spec["/UF"] == "factur-x.xml"
    assert spec["/AFRelationship"] == "/Alternative"
    embedded = spec["/EF"]["/F"].get_object()
    assert embedded["/Subtype"] == "/text#2Fxml" or embedded["/Subtype"] == "/text/xml"
    assert "/ModDate" in embedded["/Params"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_invoice_credit_note_and_statement_are_pdf_a3b(language):
    from billing.payments.statements import statement_build, statement_pdf

    note = case_credit_note("domestic", language)
    invoice = note.invoice
    invoice.refresh_from_db()
    assert_pdf_a3b(invoice_pdf_document(invoice).content, language=language, attachment=True)
    assert_pdf_a3b(credit_note_pdf_document(note).content, language=language, attachment=True)
    statement = statement_build(
        customer=note.customer,
        currency=note.currency,
        start=invoice.issue_date,
        end=note.issue_date,
    )
    assert_pdf_a3b(statement_pdf(statement), language=language, attachment=False)
