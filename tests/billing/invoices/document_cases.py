"""Invoices for every tax case, made through the services, and what their documents must say.

Each case leases two blocks whose prefixes and period are as long as they get in practice
(a /22 with three-digit octets, a period starting on 28 September: "28 Sept 2026" is the
longest English date), plus a manual line whose quantity differs from 1, so its rate and
amount differ and the columns can be told apart.
"""

import datetime
import io
import re
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from lxml import etree
from pypdf import PdfReader

from billing.invoices import services
from billing.invoices.models import Invoice, InvoiceLine
from contracts import services as contract_services
from tests.factories import CustomerFactory, make_block

VALIDATOR = Path(settings.BASE_DIR).parent / "shared" / "einvoice" / "validate-en16931"
CII = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
}


@dataclass(frozen=True)
class Case:
    country: str
    tax_id: str
    currency: str
    category: str  # the EN 16931 VAT category the e-invoice must carry
    tax_name: str
    rate: str


CASES = {
    "domestic": Case("DE", "DE123456789", "EUR", "S", "VAT", "19"),
    "reverse_charge": Case("AT", "ATU13585627", "EUR", "AE", "VAT", "0"),
    "oss": Case("FR", "", "EUR", "S", "VAT", "20"),
    "india": Case("IN", "27AAPFU0939F1ZV", "INR", "S", "IGST", "18"),
    "outside_eu": Case("US", "", "USD", "O", "VAT", "0"),
}
STARTED = datetime.date(2026, 9, 28)
# The one period that spans two years: its dates are the longest a period cell holds.
YEAR_END = datetime.date(2026, 12, 28)
_prefixes = iter(
    f"{a}.{b}.{c}.0/22"
    for a in (185, 193, 194)
    for b in range(100, 256)
    for c in range(100, 128, 4)
)


def case_invoice(case_name: str, language: str, started: datetime.date = STARTED) -> Invoice:
    case = CASES[case_name]
    customer = CustomerFactory(
        name=f"{case_name.replace('_', ' ').title()} Kunde GmbH",
        country=case.country,
        tax_id=case.tax_id,
        is_business=bool(case.tax_id),
        document_language=language,
        buyer_reference="04011000-1234512345-06" if case_name == "domestic" else "",
        purchase_order_reference="PO-2026-0815",
        default_currency=case.currency,
    )
    contract = contract_services.contract_create(
        customer=customer,
        block_ids=[make_block(next(_prefixes)).pk, make_block(next(_prefixes)).pk],
        price_per_block=Decimal("1234.56"),
        currency=case.currency,
        started_on=started,
        billing_anchor_day=28,
        actor="test",
    )
    (draft,) = services.contract_bill_due_periods(
        contract_id=contract.pk, today=started, actor="test", finalize=False
    )
    InvoiceLine.objects.create(
        invoice=draft,
        position=9,
        description="Additional rDNS zone",
        quantity=Decimal("3"),
        unit_price=Decimal("1.50"),
        amount=Decimal("4.50"),
    )
    Invoice.objects.filter(pk=draft.pk).update(
        subtotal=draft.subtotal + Decimal("4.50"), total=draft.total + Decimal("4.50")
    )
    return services.invoice_finalize(invoice_id=draft.pk, actor="test", today=started)


def reader(content: bytes) -> PdfReader:
    return PdfReader(io.BytesIO(content))


def layout_text(content: bytes, tmp_path: Path, name: str) -> str:
    """The text as `pdftotext -layout` lays it out: columns stay apart as on the page."""
    pdf = tmp_path / f"{name}.pdf"
    pdf.write_bytes(content)
    out = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, timeout=60
    )
    return out.stdout.decode()


_WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
)


def words(content: bytes, tmp_path: Path, name: str) -> list[tuple[str, float, float, float]]:
    """(text, xMin, yMin, xMax) of every word on page 1, from `pdftotext -bbox`."""
    pdf = tmp_path / f"{name}-bbox.pdf"
    pdf.write_bytes(content)
    out = subprocess.run(
        ["pdftotext", "-bbox", "-f", "1", "-l", "1", str(pdf), "-"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    return [(m[4], float(m[0]), float(m[1]), float(m[2])) for m in _WORD.findall(out)]


def embedded_xml(content: bytes) -> bytes:
    (data,) = reader(content).attachments["factur-x.xml"]
    return data


def xml_amount(xml: bytes, element: str) -> Decimal:
    root = etree.fromstring(xml)
    (node,) = root.iterfind(
        f".//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:{element}", CII
    )
    return Decimal(node.text)


def xml_values(xml: bytes, path: str) -> list[str]:
    return [n.text for n in etree.fromstring(xml).iterfind(path, CII)]


def run_validator(paths: list[Path]) -> str:
    """../shared/einvoice/validate-en16931 on the files; its whole output."""
    result = subprocess.run(
        [sys.executable, str(VALIDATOR), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.stdout + result.stderr


def case_credit_note(case_name: str, language: str, started: datetime.date = STARTED):
    """A credit note on the case's invoice that credits its first lease line whole, part of
    the second and the manual line whole: every kind of credited line, one document."""
    from billing.invoices.credit_notes import CreditLine, credit_note_issue

    invoice = case_invoice(case_name, language, started)
    first, second, manual = invoice.lines.order_by("position")
    return credit_note_issue(
        invoice_id=invoice.pk,
        actor="test",
        reason="Block delivered late; rDNS zone not set up",
        settle="credit",
        lines=[
            CreditLine(first.pk),
            CreditLine(second.pk, Decimal("100.00")),
            CreditLine(manual.pk),
        ],
    )


def case_free_credit_note(case_name: str, language: str):
    """A credit note of a free gross amount (Stripe's `amount`) on the case's invoice."""
    from billing.invoices.credit_notes import credit_note_issue

    invoice = case_invoice(case_name, language)
    return credit_note_issue(
        invoice_id=invoice.pk,
        actor="test",
        reason="Goodwill for the outage in October",
        settle="credit",
        amount=Decimal("123.45"),
    )
