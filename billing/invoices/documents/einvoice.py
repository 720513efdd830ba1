"""EN 16931 e-invoices (UN/CEFACT CII) built with drafthorse, and their PDF/A-3 embedding.

One builder serves invoices (type 380) and credit notes (type 381, naming the invoice they
correct as BT-25/BT-26), each as two documents that differ only in the specification they
claim:
- Factur-X / ZUGFeRD profile EN 16931, embedded in the PDF (`factur-x.xml`);
- XRechnung 3.0 (CII syntax), downloadable beside the PDF.
Both are checked against the Factur-X EN 16931 XSD when built, by drafthorse on
serialising and by the factur-x library after it. The XML is the invoice as issued: what
was paid later is not in it, so every copy of an invoice carries the same e-invoice.
Drafts are not invoices and void ones must not be booked, so neither has one
(`Invoice.has_einvoice`).
"""

import datetime
from dataclasses import dataclass
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

from billing.invoices.models import CreditNote, Invoice
from billing.invoices.tax import NOT_SUBJECT, VatCategory, vat_category_of
from contracts.models import EU_COUNTRIES
from core.money import ZERO

from . import content

FACTURX_EN16931 = "urn:cen.eu:en16931:2017"
XRECHNUNG_CII = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
_SCHEMA = "FACTUR-X_EN16931"
COMMERCIAL_INVOICE, CREDIT_NOTE = "380", "381"  # UNTDID 1001
UNIT = "C62"  # UN/ECE Rec 20: one (a block leased for the period)
SEPA_CREDIT_TRANSFER, CREDIT_TRANSFER = "58", "30"  # UNTDID 4461
CLEARING_BETWEEN_PARTNERS = "97"  # UNTDID 4461: amounts the partners owe each other
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


@dataclass(frozen=True)
class _Line:
    name: str
    prefix: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    rate: Decimal
    start: datetime.date | None
    end: datetime.date | None


@dataclass(frozen=True)
class _Tax:
    rate: Decimal
    basis: Decimal
    amount: Decimal


@dataclass(frozen=True)
class _Source:
    """What the builder needs of an invoice or a credit note, in the document's language."""

    number: str
    type_code: str
    issue_date: datetime.date
    invoice: Invoice  # the parties, references and VAT category (a credit note's: its invoice's)
    lines: list[_Line]
    taxes: list[_Tax]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    prepaid: Decimal
    due_date: datetime.date | None
    terms: str
    notes: list[str]
    preceding: tuple[str, datetime.date] | None = None  # BT-25, BT-26


def _invoice_source(invoice: Invoice) -> _Source:
    if not has_einvoice(invoice):
        raise ValueError(f"{invoice.ref} is not an issued invoice; it has no e-invoice.")
    lines = [
        _Line(
            content.line_description(line),
            line.block.prefix if line.block_id else "",
            line.quantity,
            line.unit_price,
            line.amount,
            line.tax_rate,
            line.period_start,
            line.period_end,
        )
        for line in invoice.lines.all()
    ]
    return _Source(
        number=invoice.number,
        type_code=COMMERCIAL_INVOICE,
        issue_date=invoice.issue_date,
        invoice=invoice,
        lines=lines,
        taxes=[_Tax(t.rate, t.taxable_amount, t.amount) for t in invoice.tax_lines.all()],
        subtotal=invoice.subtotal,
        tax=invoice.tax,
        total=invoice.total,
        # Customer credit used at finalisation is money already received (BT-113); credit
        # notes are documents of their own and do not change the invoice's figures.
        prepaid=invoice.applied_balance,
        due_date=invoice.due_date,
        terms=_("Payment terms: %(days)s days net") % {"days": settings.PAYMENT_TERMS_DAYS},
        notes=[],
    )


def _credit_note_source(note: CreditNote) -> _Source:
    invoice = note.invoice
    lines = []
    for line in note.lines.all():
        original = line.invoice_line
        whole = original is not None and line.amount == original.amount
        lines.append(
            _Line(
                content.credit_line_description(line),
                original.block.prefix if original is not None and original.block_id else "",
                # A line credited whole keeps its quantity and price; a part is one amount.
                original.quantity if whole else Decimal(1),
                original.unit_price if whole else line.amount,
                line.amount,
                line.tax_rate,
                (original.period_start if original else None) or invoice.period_start,
                (original.period_end if original else None) or invoice.period_end,
            )
        )
    return _Source(
        number=note.number,
        type_code=CREDIT_NOTE,
        issue_date=note.issue_date,
        invoice=invoice,
        lines=lines,
        # A credit note's amounts are positive: its type code is what makes them a credit.
        taxes=[_Tax(t.rate, t.taxable_amount, t.amount) for t in note.tax_lines.all()],
        subtotal=note.subtotal,
        tax=note.tax,
        total=note.total,
        prepaid=ZERO,
        due_date=None,
        terms=content.credit_note_settlement(note),
        notes=[_("Reason: %(reason)s") % {"reason": note.reason}],
        preceding=(invoice.number, invoice.issue_date),
    )


def build_xml(invoice: Invoice, *, guideline: str = FACTURX_EN16931) -> bytes:
    """The invoice as an EN 16931 CII document; raises on an XSD violation.

    `invoice` must come with lines (and their blocks), tax lines, customer and contract.
    """
    if not has_einvoice(invoice):
        raise ValueError(f"{invoice.ref} is not an issued invoice; it has no e-invoice.")
    return _checked(invoice, content.language(invoice), guideline)


def build_credit_note_xml(note: CreditNote, *, guideline: str = FACTURX_EN16931) -> bytes:
    """The credit note as an EN 16931 CII document (type 381); raises on an XSD violation.

    `note` must come with its invoice (with customer and contract), lines (with their
    invoice lines and blocks) and tax lines.
    """
    return _checked(note, content.language(note.invoice), guideline)


def _checked(document: Invoice | CreditNote, language: str, guideline: str) -> bytes:
    with translation.override(language):
        xml = _build(document, guideline)
    # drafthorse validated against its own copy of the schema; the factur-x library's XSD
    # is the reference the embedding relies on, so every e-invoice passes it too.
    facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    return xml


def _build(document: Invoice | CreditNote, guideline: str) -> bytes:
    source = (
        _credit_note_source(document)
        if isinstance(document, CreditNote)
        else _invoice_source(document)
    )
    invoice = source.invoice
    category = invoice_category(invoice)
    if category.code != "S" and any(t.amount != ZERO for t in source.taxes):
        raise ValueError(f"{source.number}: tax charged on a {category.code} supply.")
    refs = content.references(invoice)
    currency = invoice.currency

    doc = Document()
    doc.context.guideline_parameter.id = guideline
    doc.header.id = source.number
    doc.header.type_code = source.type_code
    doc.header.issue_date_time = source.issue_date
    if category.exemption_reason:
        doc.header.notes.add(IncludedNote(content=_(category.exemption_reason)))
    for text in source.notes:
        doc.header.notes.add(IncludedNote(content=text))
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
    for position, line in enumerate(source.lines, start=1):
        item = LineItem()
        item.document.line_id = str(position)
        item.product.name = line.name
        if line.prefix:
            item.product.seller_assigned_id = line.prefix
        if india:
            item.product.classifications.add(
                ProductClassification(
                    class_code=(MUTUALLY_DEFINED, SAC_LIST_VERSION, settings.INDIA_SAC_CODE)
                )
            )
        item.agreement.net.amount = line.unit_price
        item.delivery.billed_quantity = (line.quantity, UNIT)
        _tax_fields(item.settlement.trade_tax, category, line.rate)
        if line.start and line.end:
            item.settlement.period.start = line.start
            item.settlement.period.end = line.end
        item.settlement.monetary_summation.total_amount = line.amount
        doc.trade.items.add(item)

    settlement = doc.trade.settlement
    settlement.currency_code = currency
    settlement.payment_reference = source.number
    seller = settings.SELLER
    means = PaymentMeans()
    if source.type_code == CREDIT_NOTE:
        # Nothing is transferred to the seller: the credit is set off against the invoice,
        # kept as the customer's credit or refunded the way the customer paid (the terms
        # say which), so the seller's account would mislead.
        means.type_code = CLEARING_BETWEEN_PARTNERS
    else:
        means.type_code = SEPA_CREDIT_TRANSFER if currency == "EUR" else CREDIT_TRANSFER
        means.payee_account.iban = seller["iban"]
        means.payee_account.account_name = seller["name"]
        means.payee_institution.bic = seller["bic"]
    settlement.payment_means.add(means)
    for group in source.taxes:
        tax = ApplicableTradeTax()
        tax.calculated_amount = group.amount
        tax.basis_amount = group.basis
        _tax_fields(tax, category, group.rate)
        if category.exemption_code:
            tax.exemption_reason = _(category.exemption_reason)
            tax.exemption_reason_code = category.exemption_code
        settlement.trade_tax.add(tax)
    settlement.period.start = invoice.period_start
    settlement.period.end = invoice.period_end
    terms = PaymentTerms()
    terms.description = source.terms
    if source.due_date:
        terms.due = source.due_date
    settlement.terms.add(terms)
    if source.preceding:
        settlement.invoice_referenced_document.issuer_assigned_id = source.preceding[0]
        settlement.invoice_referenced_document.issue_date_time = source.preceding[1]

    sums = settlement.monetary_summation
    sums.line_total = sum((line.amount for line in source.lines), ZERO)
    sums.charge_total = ZERO
    sums.allowance_total = ZERO
    sums.tax_basis_total = source.subtotal
    sums.tax_total = (source.tax, currency)
    sums.grand_total = source.total
    sums.prepaid_total = source.prepaid
    sums.due_amount = source.total - source.prepaid
    return doc.serialize(schema=_SCHEMA)


def embed_in_pdf(pdf: bytes, xml: bytes, document: Invoice | CreditNote, *, lang: str) -> bytes:
    """A PDF/A-3 Factur-X document: the XML attached as factur-x.xml ("Alternative": the
    XML is the same document as the visible one) and XMP metadata naming the profile."""
    seller = settings.SELLER["name"]
    values = {"number": document.number, "date": document.issue_date, "seller": seller}
    if isinstance(document, CreditNote):
        kind = _("Credit note")
        subject = _("Credit note %(number)s of %(date)s from %(seller)s") % values
    else:
        kind = _("Invoice")
        subject = _("Invoice %(number)s of %(date)s from %(seller)s") % values
    return facturx.generate_from_binary(
        pdf,
        xml,
        flavor="factur-x",
        level="en16931",
        check_xsd=False,  # the build checked it
        pdf_metadata={
            "author": seller,
            "keywords": "Factur-X, ZUGFeRD, EN 16931, " + kind,
            "title": document.number,
            "subject": subject,
        },
        lang=lang,
        afrelationship="alternative",
    )
