"""EN 16931 e-invoices: Factur-X inside a PDF/A-3 document, XRechnung beside it.

Every XML these tests make is checked against the factur-x library's XSD, and when
../shared/einvoice/validate-en16931 is there (the official EN 16931 schematron), against
the business rules too, for every tax case in both languages.
"""

import re
from decimal import Decimal

import facturx
import pytest
from django.urls import reverse

from billing.invoices import services as invoice_services
from billing.invoices.documents import einvoice
from billing.invoices.documents.pdf import (
    credit_note_pdf_document,
    credit_note_xrechnung,
    invoice_pdf_document,
    invoice_xrechnung,
    with_document_data,
)
from billing.invoices.models import Invoice
from billing.payments import services as payment_services
from billing.payments.models import PaymentKind
from contracts.models import Role
from tests.billing.invoices.document_cases import (
    CASES,
    VALIDATOR,
    case_credit_note,
    case_free_credit_note,
    case_invoice,
    embedded_xml,
    reader,
    run_validator,
    xml_amount,
    xml_values,
)
from tests.factories import CustomerFactory, MembershipFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db
LANGUAGES = ("en", "de")
TRADE_TAX = ".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax"
LINE_TAX = ".//ram:SpecifiedLineTradeSettlement/ram:ApplicableTradeTax"


def _xmp(content: bytes) -> str:
    root = reader(content).trailer["/Root"]
    return root["/Metadata"].get_object().get_data().decode()


def _xsd_ok(xml: bytes) -> None:
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("case_name", list(CASES))
def test_pdf_carries_factur_x_whose_totals_and_vat_are_the_invoices(case_name, language):
    case = CASES[case_name]
    invoice = case_invoice(case_name, language)
    content = invoice_pdf_document(invoice).content

    xml = embedded_xml(content)
    _xsd_ok(xml)
    assert xml_values(xml, ".//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID") == [
        einvoice.FACTURX_EN16931
    ]
    assert xml_values(xml, ".//rsm:ExchangedDocument/ram:ID") == [invoice.number]
    assert xml_amount(xml, "LineTotalAmount") == invoice.subtotal
    assert xml_amount(xml, "TaxBasisTotalAmount") == invoice.subtotal
    assert xml_amount(xml, "TaxTotalAmount") == invoice.tax
    assert xml_amount(xml, "GrandTotalAmount") == invoice.total
    assert xml_amount(xml, "DuePayableAmount") == invoice.total
    assert xml_values(xml, ".//ram:InvoiceCurrencyCode") == [case.currency]

    assert set(xml_values(xml, f"{TRADE_TAX}/ram:CategoryCode")) == {case.category}
    assert len(xml_values(xml, f"{LINE_TAX}/ram:CategoryCode")) == invoice.lines.count()
    rates = xml_values(xml, f"{TRADE_TAX}/ram:RateApplicablePercent")
    if case.category == "O":
        assert rates == []  # "not subject to VAT" has no rate at all
        assert xml_values(xml, f"{TRADE_TAX}/ram:ExemptionReasonCode") == ["VATEX-EU-O"]
        assert "VA" not in re.findall(r'schemeID="(\w+)"', xml.decode())
    else:
        assert [Decimal(r) for r in rates] == [Decimal(case.rate)]
    if case.category == "AE":
        assert xml_values(xml, f"{TRADE_TAX}/ram:ExemptionReasonCode") == ["VATEX-EU-AE"]
        assert xml_values(xml, ".//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == [
            case.tax_id
        ]
    if case.country == "IN":
        assert set(xml_values(xml, ".//ram:DesignatedProductClassification/ram:ClassCode")) == {
            "997339"
        }
        # A GSTIN is no EU VAT id: it is the buyer's legal registration identifier.
        assert xml_values(xml, ".//ram:BuyerTradeParty/ram:SpecifiedLegalOrganization/ram:ID") == [
            case.tax_id
        ]
    assert xml_values(xml, ".//ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID") == [
        "PO-2026-0815"
    ]
    assert xml_values(xml, ".//ram:ContractReferencedDocument/ram:IssuerAssignedID") == [
        invoice.contract.reference
    ]
    assert xml_values(xml, ".//ram:PayeePartyCreditorFinancialAccount/ram:IBANID") == [
        "DE89370400440532013000"
    ]


@pytest.mark.parametrize("language", LANGUAGES)
def test_pdf_a3_and_factur_x_are_claimed_in_the_xmp_metadata(language):
    invoice = case_invoice("domestic", language)
    content = invoice_pdf_document(invoice).content
    xmp = _xmp(content)
    assert re.search(r"pdfaid:part(>|=\")3", xmp), xmp
    assert re.search(r"pdfaid:conformance(>|=\")B", xmp), xmp
    assert re.search(r"fx:ConformanceLevel(>|=\")EN 16931", xmp), xmp
    assert re.search(r"fx:DocumentFileName(>|=\")factur-x.xml", xmp), xmp
    catalog = reader(content).trailer["/Root"]
    (spec,) = [ref.get_object() for ref in catalog["/AF"]]
    assert spec["/F"] == "factur-x.xml"
    assert spec["/AFRelationship"] == "/Alternative"
    assert "/OutputIntents" in catalog  # PDF/A needs the colour space named
    assert catalog["/Lang"] == language


def test_a_draft_is_pdf_a3_without_an_e_invoice():
    draft = make_invoice(finalize=False)
    content = invoice_pdf_document(draft).content
    assert re.search(r"pdfaid:part(>|=\")3", _xmp(content))
    assert not reader(content).attachments
    with pytest.raises(ValueError, match="no e-invoice"):
        einvoice.build_xml(with_document_data(Invoice.objects.all()).get(pk=draft.pk))


def test_a_void_invoice_carries_no_e_invoice():
    invoice = make_invoice()
    invoice_services.invoice_void(invoice_id=invoice.pk, actor="staff", reason="duplicate")
    invoice.refresh_from_db()
    assert not reader(invoice_pdf_document(invoice).content).attachments


def test_the_e_invoice_of_a_paid_invoice_is_the_invoice_as_issued():
    invoice = make_invoice()
    issued = embedded_xml(invoice_pdf_document(invoice).content)
    payment = payment_services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.API, actor="t"
    )
    payment_services.payment_record_success(payment_id=payment.pk, actor="t")
    invoice.refresh_from_db()
    paid = embedded_xml(invoice_pdf_document(invoice).content)
    assert paid == issued


def test_an_xml_the_schema_refuses_is_never_served(monkeypatch):
    invoice = with_document_data(Invoice.objects.all()).get(pk=make_invoice().pk)
    good = einvoice._build(invoice, einvoice.FACTURX_EN16931)
    broken = good.replace(b"<ram:TypeCode>380</ram:TypeCode>", b"", 1)
    monkeypatch.setattr(einvoice, "_build", lambda *a: broken)
    with pytest.raises(Exception, match=r"XSD|schema|Element"):
        einvoice.build_xml(invoice)


def test_buyer_reference_and_order_come_from_the_contract_over_the_customer_and_stay():
    customer = CustomerFactory(
        buyer_reference="991-11111-11", purchase_order_reference="PO-CUSTOMER"
    )
    contract = make_contract(customer)
    contract.buyer_reference = "04011000-1234512345-06"
    contract.save()
    invoice = make_invoice(contract)
    customer.buyer_reference, customer.purchase_order_reference = "changed", "changed"
    customer.save()
    contract.buyer_reference = "changed"
    contract.save()

    xml = invoice_xrechnung(invoice)
    assert xml_values(xml, ".//ram:BuyerReference") == ["04011000-1234512345-06"]
    assert xml_values(xml, ".//ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID") == [
        "PO-CUSTOMER"
    ]


def test_without_a_buyer_reference_the_contract_reference_is_sent():
    invoice = make_invoice()
    xml = invoice_xrechnung(invoice)
    assert xml_values(xml, ".//ram:BuyerReference") == [invoice.contract.reference]
    assert xml_values(xml, ".//ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID") == []


# --- The XRechnung download ------------------------------------------------------------


@pytest.fixture
def member_client(client, customer):
    client.force_login(MembershipFactory(customer=customer, role=Role.VIEWER).user)
    return client


def test_xrechnung_download(member_client, customer):
    customer.buyer_reference = "04011000-1234512345-06"
    customer.save()
    invoice = make_invoice(customer=customer)

    response = member_client.get(reverse("invoices:invoice-xml", args=[invoice.number]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{invoice.number}.xml"'
    xml = response.content
    _xsd_ok(xml)
    assert xml_values(xml, ".//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID") == [
        einvoice.XRECHNUNG_CII
    ]
    assert xml_values(xml, ".//ram:BuyerReference") == ["04011000-1234512345-06"]
    assert xml_amount(xml, "GrandTotalAmount") == invoice.total


def test_xml_links_on_the_detail_page_and_in_the_row_menu(member_client, customer):
    invoice = make_invoice(customer=customer)
    draft = make_invoice(customer=customer, finalize=False)
    url = reverse("invoices:invoice-xml", args=[invoice.number])
    detail = member_client.get(invoice.get_absolute_url()).content.decode()
    assert f'href="{url}"' in detail and "Download XML (XRechnung)" in detail
    listing = member_client.get(reverse("invoices:invoice-list")).content.decode()
    assert f'href="{url}"' in listing
    assert reverse("invoices:invoice-xml", args=[draft.ref]) not in listing


def test_drafts_void_and_foreign_invoices_have_no_xml(client, member_client, customer):
    draft = make_invoice(customer=customer, finalize=False)
    void = make_invoice(customer=customer)
    invoice_services.invoice_void(invoice_id=void.pk, actor="staff")
    foreign = make_invoice(customer=CustomerFactory())

    for ref in (draft.ref, void.number):
        response = member_client.get(reverse("invoices:invoice-xml", args=[ref]))
        assert response.status_code == 404
        assert "has no e-invoice" in response.content.decode()
    assert (
        member_client.get(reverse("invoices:invoice-xml", args=[foreign.number])).status_code == 404
    )
    client.logout()
    assert client.get(reverse("invoices:invoice-xml", args=[void.number])).status_code == 302


def test_a_failing_build_is_a_clear_503(member_client, customer, monkeypatch):
    invoice = make_invoice(customer=customer)
    monkeypatch.setattr(einvoice, "_build", lambda *a: 1 / 0)
    response = member_client.get(reverse("invoices:invoice-xml", args=[invoice.number]))
    assert response.status_code == 503
    assert "could not be produced" in response.content.decode()


# --- The EN 16931 business rules (../shared/einvoice/validate-en16931) -------------------


@pytest.mark.skipif(not VALIDATOR.exists(), reason="../shared/einvoice is not beside the repo")
def test_every_case_passes_the_en16931_business_rules(tmp_path):
    files = []
    for case_name in CASES:
        for language in LANGUAGES:
            invoice = case_invoice(case_name, language)
            pdf = tmp_path / f"{case_name}-{language}.pdf"
            pdf.write_bytes(invoice_pdf_document(invoice).content)
            xml = tmp_path / f"{case_name}-{language}-xrechnung.xml"
            xml.write_bytes(invoice_xrechnung(invoice))
            files += [pdf, xml]

    output = run_validator(files)

    for path in files:
        assert f"{path}: 0 fatal," in output, output
    assert "fatal:" not in output, output


@pytest.mark.skipif(not VALIDATOR.exists(), reason="../shared/einvoice is not beside the repo")
def test_every_credit_note_passes_the_en16931_business_rules(tmp_path):
    files = []
    for case_name in CASES:
        notes = [(language, case_credit_note(case_name, language)) for language in LANGUAGES]
        notes.append(("free", case_free_credit_note(case_name, "en")))
        for label, note in notes:
            pdf = tmp_path / f"cn-{case_name}-{label}.pdf"
            pdf.write_bytes(credit_note_pdf_document(note).content)
            xml = tmp_path / f"cn-{case_name}-{label}-xrechnung.xml"
            xml.write_bytes(credit_note_xrechnung(note))
            files += [pdf, xml]

    output = run_validator(files)

    for path in files:
        assert f"{path}: 0 fatal," in output, output
    assert "fatal:" not in output, output


def test_a_german_e_invoice_gives_its_exemption_reason_in_german():
    xml = embedded_xml(invoice_pdf_document(case_invoice("reverse_charge", "de")).content)
    (reason,) = xml_values(xml, f"{TRADE_TAX}/ram:ExemptionReason")
    assert reason.startswith("Steuerschuldnerschaft des Leistungsempfängers")
    names = xml_values(xml, ".//ram:SpecifiedTradeProduct/ram:Name")
    assert names[0].startswith("IPv4-Miete 185.") and "(1.024 Adressen)" in names[0]
