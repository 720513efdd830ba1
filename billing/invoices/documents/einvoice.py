"""EN 16931 e-invoices (UN/CEFACT CII) built with drafthorse, and their PDF/A-3 embedding.

One builder serves two documents that differ only in the specification they claim:
- Factur-X / ZUGFeRD profile EN 16931, embedded in the invoice PDF (`factur-x.xml`);
- XRechnung 3.0 (CII syntax), downloadable beside the PDF.
Both are checked against the Factur-X EN 16931 XSD when built, by drafthorse on
serialising and by the factur-x library after it. The XML is the invoice as issued: what
was paid later is not in it, so every copy of an invoice carries the same e-invoice.
Drafts are not invoices and void ones must not be booked, so neither has one
(`Invoice.has_einvoice`).
"""

from decimal import Decimal

import facturx
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _
from drafthorse.models.accounting import ApplicableTradeTax
from drafthorse.models.document import Document
from drafthorse.models.note import IncludedNote
from drafthorse.models.party import TaxRegistration
from drafthorse.models.payment import PaymentMeans, PaymentTerms
from drafthorse.models.product import ProductClassification
from drafthorse.models.tradelines import LineItem

from billing.invoices.models import Invoice
from billing.invoices.tax import NOT_SUBJECT, VatCategory, vat_category_of
from contracts.models import EU_COUNTRIES
from core.money import ZERO

from . import content

FACTURX_EN16931 = "urn:cen.eu:en16931:2017"
XRECHNUNG_CII = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
_SCHEMA = "FACTUR-X_EN16931"
COMMERCIAL_INVOICE = "380"  # UNTDID 1001
UNIT = "C62"  # UN/ECE Rec 20: one (a block leased for the period)
SEPA_CREDIT_TRANSFER, CREDIT_TRANSFER = "58", "30"  # UNTDID 4461
MUTUALLY_DEFINED = "ZZZ"  # UNTDID 7143 has no list for Indian SAC codes
SAC_LIST_VERSION = "GST 2017"  # the SAC scheme notified with GST in 2017


def has_einvoice(invoice: Invoice) -> bool:
    return invoice.has_einvoice


def invoice_category(invoice: Invoice) -> VatCategory:
    """The VAT category of the issued invoice: the rule tax_for applied to it."""
    return vat_category_of(invoice.tax_note)


def _is_eu_vat_id(tax_id: str) -> bool:
    prefix = tax_id[:2].upper()
    return prefix in EU_COUNTRIES or prefix == "EL"  # Greece's VAT ids start with EL


def _seller_legal_info(seller: dict) -> str:
    return (
        f"{seller['name']}, "
        + _("Registered office")
        + f": {seller['seat']}, {seller['register_court']} {seller['register_number']}, "
        + _("Managing directors")
        + ": "
        + ", ".join(seller["managing_directors"])
    )


def _add_seller(doc: Document, category: VatCategory) -> None:
    seller = settings.SELLER
    party = doc.trade.agreement.seller
    party.name = seller["name"]
    party.description = _seller_legal_info(seller)
    party.legal_organization.id = seller["register_number"]
    party.legal_organization.trade_name = seller["name"]
    party.contact.person_name = seller["contact_name"]
    party.contact.telephone.number = seller["phone"]
    party.contact.email.address = seller["email"]
    party.address.line_one = seller["street"]
    party.address.postcode = seller["postal_code"]
    party.address.city_name = seller["city"]
    party.address.country_id = seller["country"]
    party.electronic_address.uri_ID = ("EM", seller["email"])
    party.tax_registrations.add(TaxRegistration(id=("FC", seller["tax_number"])))
    if category != NOT_SUBJECT:  # BR-O-02: no VAT ids on a supply not subject to VAT
        party.tax_registrations.add(TaxRegistration(id=("VA", seller["vat_id"])))


def _add_buyer(doc: Document, invoice: Invoice, category: VatCategory) -> None:
    buyer = content.buyer(invoice)
    party = doc.trade.agreement.buyer
    party.name = buyer.name
    party.address.line_one = buyer.line1
    if buyer.line2:
        party.address.line_two = buyer.line2
    party.address.postcode = buyer.postal_code
    party.address.city_name = buyer.city
    if buyer.state:
        party.address.country_subdivision = buyer.state
    party.address.country_id = buyer.country
    if buyer.email:
        party.electronic_address.uri_ID = ("EM", buyer.email)
    if buyer.tax_id:
        if _is_eu_vat_id(buyer.tax_id) and category != NOT_SUBJECT:
            party.tax_registrations.add(TaxRegistration(id=("VA", buyer.tax_id)))
        else:
            # A GSTIN or another non-EU tax number is no VAT id (BR-CO-09 wants a country
            # prefix): it goes as the buyer's legal registration identifier (BT-47).
            party.legal_organization.id = buyer.tax_id


def _tax_fields(tax, category: VatCategory, rate: Decimal) -> None:
    tax.type_code = "VAT"
    tax.category_code = category.code
    if category != NOT_SUBJECT:  # BR-O-05, BR-O-10: "not subject" has no rate at all
        tax.rate_applicable_percent = rate


def build_xml(invoice: Invoice, *, guideline: str = FACTURX_EN16931) -> bytes:
    """The invoice as an EN 16931 CII document; raises on an XSD violation.

    `invoice` must come with lines (and their blocks), tax lines, customer and contract.
    """
    if not has_einvoice(invoice):
        raise ValueError(f"{invoice.ref} is not an issued invoice; it has no e-invoice.")
    with translation.override(content.language(invoice)):
        xml = _build(invoice, guideline)
    # drafthorse validated against its own copy of the schema; the factur-x library's XSD
    # is the reference the embedding relies on, so every e-invoice passes it too.
    facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    return xml


def _build(invoice: Invoice, guideline: str) -> bytes:
    category = invoice_category(invoice)
    tax_lines = list(invoice.tax_lines.all())
    lines = list(invoice.lines.all())
    if category.code != "S" and any(t.amount != ZERO for t in tax_lines):
        raise ValueError(f"{invoice.ref}: tax charged on a {category.code} supply.")
    refs = content.references(invoice)
    currency = invoice.currency

    doc = Document()
    doc.context.guideline_parameter.id = guideline
    doc.header.id = invoice.number
    doc.header.type_code = COMMERCIAL_INVOICE
    doc.header.issue_date_time = invoice.issue_date
    if category.exemption_reason:
        doc.header.notes.add(IncludedNote(content=_(category.exemption_reason)))
    doc.header.notes.add(
        IncludedNote(content=_seller_legal_info(settings.SELLER), subject_code="REG")
    )

    # BT-10 is mandatory in XRechnung: without a buyer's own reference the contract
    # (or, for a manual invoice, the invoice number) is what the buyer can route by.
    contract_ref = invoice.contract.reference if invoice.contract_id else ""
    doc.trade.agreement.buyer_reference = refs.buyer or contract_ref or invoice.number
    _add_seller(doc, category)
    _add_buyer(doc, invoice, category)
    if refs.order:
        doc.trade.agreement.buyer_order.issuer_assigned_id = refs.order
    if contract_ref:
        doc.trade.agreement.contract.issuer_assigned_id = contract_ref

    india = content.buyer(invoice).country == "IN"
    for position, line in enumerate(lines, start=1):
        item = LineItem()
        item.document.line_id = str(position)
        item.product.name = content.line_description(line)
        if line.block_id:
            item.product.seller_assigned_id = line.block.prefix
        if india:
            item.product.classifications.add(
                ProductClassification(
                    class_code=(MUTUALLY_DEFINED, SAC_LIST_VERSION, settings.INDIA_SAC_CODE)
                )
            )
        item.agreement.net.amount = line.unit_price
        item.delivery.billed_quantity = (line.quantity, UNIT)
        _tax_fields(item.settlement.trade_tax, category, line.tax_rate)
        if line.period_start and line.period_end:
            item.settlement.period.start = line.period_start
            item.settlement.period.end = line.period_end
        item.settlement.monetary_summation.total_amount = line.amount
        doc.trade.items.add(item)

    settlement = doc.trade.settlement
    settlement.currency_code = currency
    settlement.payment_reference = invoice.number
    seller = settings.SELLER
    means = PaymentMeans()
    means.type_code = SEPA_CREDIT_TRANSFER if currency == "EUR" else CREDIT_TRANSFER
    means.payee_account.iban = seller["iban"]
    means.payee_account.account_name = seller["name"]
    means.payee_institution.bic = seller["bic"]
    settlement.payment_means.add(means)
    for group in tax_lines:
        tax = ApplicableTradeTax()
        tax.calculated_amount = group.amount
        tax.basis_amount = group.taxable_amount
        _tax_fields(tax, category, group.rate)
        if category.exemption_code:
            tax.exemption_reason = _(category.exemption_reason)
            tax.exemption_reason_code = category.exemption_code
        settlement.trade_tax.add(tax)
    settlement.period.start = invoice.period_start
    settlement.period.end = invoice.period_end
    terms = PaymentTerms()
    terms.description = _("Payment terms: %(days)s days net") % {
        "days": settings.PAYMENT_TERMS_DAYS
    }
    terms.due = invoice.due_date
    settlement.terms.add(terms)

    sums = settlement.monetary_summation
    sums.line_total = sum((line.amount for line in lines), ZERO)
    sums.charge_total = ZERO
    sums.allowance_total = ZERO
    sums.tax_basis_total = invoice.subtotal
    sums.tax_total = (invoice.tax, currency)
    sums.grand_total = invoice.total
    # Customer credit used at finalisation is money already received (BT-113); credit
    # notes are documents of their own and do not change the invoice's figures.
    sums.prepaid_total = invoice.applied_balance
    sums.due_amount = invoice.total - invoice.applied_balance
    return doc.serialize(schema=_SCHEMA)


def embed_in_pdf(pdf: bytes, xml: bytes, invoice: Invoice, *, lang: str) -> bytes:
    """A PDF/A-3 Factur-X document: the XML attached as factur-x.xml ("Alternative": the
    XML is the same invoice as the visible one) and XMP metadata naming the profile."""
    seller = settings.SELLER["name"]
    return facturx.generate_from_binary(
        pdf,
        xml,
        flavor="factur-x",
        level="en16931",
        check_xsd=False,  # build_xml checked it
        pdf_metadata={
            "author": seller,
            "keywords": "Factur-X, ZUGFeRD, EN 16931, " + _("Invoice"),
            "title": invoice.number,
            "subject": _("Invoice %(number)s of %(date)s from %(seller)s")
            % {"number": invoice.number, "date": invoice.issue_date, "seller": seller},
        },
        lang=lang,
        afrelationship="alternative",
    )
