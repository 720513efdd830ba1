"""Text customers (or staff on their behalf) typed is shown as text, never as markup."""

import csv
import io

import pytest

from billing.invoices import services as billing
from billing.invoices.models import InvoiceLine
from contracts.models import Role
from tests.factories import CustomerFactory, MembershipFactory, make_contract, make_invoice

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
LINE = 'Lease <script>alert("line")</script> 10.0.0.0/24'


class Hostile:
    pass


@pytest.fixture
def hostile(db):
    """A customer named like a script, with an invoice line like one, before finalising, so
    the invoice's bill-to snapshot and its documents carry them too."""
    h = Hostile()
    h.customer = CustomerFactory(name=SCRIPT, tax_id='=HYPERLINK("x")')
    h.owner = MembershipFactory(customer=h.customer, role=Role.OWNER)
    h.contract = make_contract(h.customer)
    draft = make_invoice(h.contract, finalize=False)
    InvoiceLine.objects.filter(invoice=draft).update(description=LINE)
    h.invoice = billing.invoice_finalize(invoice_id=draft.pk, actor="test")
    return h


def _page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return response.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/invoices/",
        "/invoices/{number}/",
        "/contracts/",
        "/contracts/{contract}/",
        "/account/customer/",
        "/payment-methods/",
        "/settings/tokens/",
    ],
)
def test_customer_name_is_escaped(client, hostile, path):
    client.force_login(hostile.owner.user)
    html = _page(client, path.format(number=hostile.invoice.number, contract=hostile.contract.pk))
    assert SCRIPT not in html
    assert "<script>alert" not in html
    assert ESCAPED in html, "the name is shown, escaped"


def test_pay_page_is_escaped(client, hostile):
    client.force_login(hostile.owner.user)
    html = _page(client, f"/invoices/{hostile.invoice.number}/pay/")
    assert "<script>alert" not in html
    # The pay page itself, not an error page (it shows no customer-written text today).
    assert f"Pay invoice {hostile.invoice.number}" in html and "Continue to payment" in html


@pytest.mark.parametrize("path", ["/invoices/{number}/"])
def test_invoice_line_is_escaped(client, hostile, path):
    client.force_login(hostile.owner.user)
    html = _page(client, path.format(number=hostile.invoice.number))
    assert '<script>alert("line")' not in html
    assert "&lt;script&gt;alert(&quot;line&quot;)&lt;/script&gt;" in html


def test_csv_is_data_not_markup(client, hostile):
    client.force_login(hostile.owner.user)
    response = client.get("/invoices/export.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][0] == "number"
    assert any(hostile.invoice.number in row for row in rows[1:])


def test_csv_neutralises_spreadsheet_formulas(client, hostile):
    client.force_login(hostile.owner.user)
    response = client.get("/invoices/export.csv")
    body = b"".join(response.streaming_content).decode()
    cells = [cell for row in csv.reader(io.StringIO(body)) for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells if cell)
    assert '\'=HYPERLINK("x")' in cells, "the VAT id is there, neutralised"


def test_pdf_text_is_escaped(client, hostile):
    client.force_login(hostile.owner.user)
    response = client.get(f"/invoices/{hostile.invoice.number}/pdf/")
    assert response.status_code == 200
    from pypdf import PdfReader

    content = b"".join(response.streaming_content) if response.streaming else response.content
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    # WeasyPrint renders HTML: escaped markup shows up as the literal text, and a
    # script tag that had been injected would have vanished from the text.
    assert "<script>alert(1)</script>" in text.replace("\n", "")
    assert 'alert("line")' in text.replace("\n", "")
