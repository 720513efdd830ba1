"""Credit notes where customers see them: invoice page, list, CSV, ZIP, own page and PDF."""

import csv
import datetime
import io
import zipfile
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.invoices.balance import customer_balance_adjust
from billing.invoices.credit_notes import CreditLine, credit_note_issue
from billing.invoices.documents.pdf import invoice_pdf_document
from tests.billing.invoices.pdf_helpers import pdf_text
from tests.factories import MembershipFactory, make_invoice

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def client_of(client, owner):
    client.force_login(owner)
    return client


def credit(invoice, **kw):
    kw.setdefault("reason", "Block 10.0.0.0/24 was not delivered in time")
    kw.setdefault("settle", "credit")
    return credit_note_issue(invoice_id=invoice.pk, actor="staff", **kw)


def test_credit_note_page_shows_what_was_credited_and_links_the_invoice(client_of, customer):
    invoice = make_invoice(customer=customer)
    (line,) = invoice.lines.all()
    note = credit(invoice, lines=[CreditLine(line.pk, D("25.00"))])
    response = client_of.get(reverse("invoices:credit-note-detail", args=[note.number]))
    assert response.status_code == 200
    html = response.content.decode()
    assert f"Credit note {note.number}" in html
    assert reverse("invoices:invoice-detail", args=[invoice.number]) in html
    assert "29.75 EUR" in html  # 25.00 + 19 %
    assert "4.75 EUR" in html
    assert "was not delivered in time" in html
    assert "Part of: IPv4 lease" in html


def test_invoice_page_lists_its_credit_notes_and_the_reduced_amount_due(client_of, customer):
    invoice = make_invoice(customer=customer)
    note = credit(invoice, amount=D("19.00"))
    html = client_of.get(reverse("invoices:invoice-detail", args=[invoice.number])).content
    html = html.decode()
    assert note.number in html
    assert reverse("invoices:credit-note-pdf", args=[note.number]) in html
    assert "Credited</dt><dd>19.00 EUR" in html
    assert "Amount due</dt><dd><strong>100.00 EUR" in html  # 119.00 - 19.00


def test_invoice_page_shows_the_applied_balance(client_of, customer):
    customer_balance_adjust(
        customer_id=customer.pk, currency="EUR", amount=D("9.00"), note="goodwill", actor="s"
    )
    invoice = make_invoice(customer=customer)
    html = client_of.get(reverse("invoices:invoice-detail", args=[invoice.number])).content
    assert b"Applied balance</dt><dd>9.00 EUR" in html
    assert b"Amount due</dt><dd><strong>110.00 EUR" in html
    text = pdf_text(invoice_pdf_document(invoice).content)
    assert "Applied balance (your credit) -€9.00" in text
    assert "Amount due by 15 Jan 2026 €110.00" in text


def test_another_customers_credit_note_is_404(client_of, other_customer):
    theirs = credit(make_invoice(customer=other_customer), amount=D("5.00"))
    for name in ("invoices:credit-note-detail", "invoices:credit-note-pdf"):
        assert client_of.get(reverse(name, args=[theirs.number])).status_code == 404
    assert client_of.get(reverse("invoices:credit-note-detail", args=["CN-9"])).status_code == 404


def test_credit_note_pdf_reads_back(client_of, customer):
    customer.tax_id = "FR40303265045"
    customer.country = "FR"
    customer.save()
    invoice = make_invoice(customer=customer, started_on=datetime.date(2026, 3, 1))
    note = credit(invoice, amount=D("40.00"), reason="Wrong period billed")
    response = client_of.get(reverse("invoices:credit-note-pdf", args=[note.number]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{note.number}.pdf"'
    text = pdf_text(response.content)
    assert f"Credit note {note.number}" in text
    assert f"Corrects invoice {invoice.number} of 1 Mar 2026." in text
    assert "Wrong period billed" in text
    assert "Total credited -€40.00" in text
    assert "Reverse charge" in text  # the original's tax note, kept
    again = client_of.get(
        reverse("invoices:credit-note-pdf", args=[note.number]),
        headers={"If-None-Match": response["ETag"]},
    )
    assert again.status_code == 304
    # The invoice's own PDF names the credit note and the reduced amount due.
    invoice.refresh_from_db()
    text = pdf_text(invoice_pdf_document(invoice).content)
    assert f"Credit note {note.number} of" in text and "-€40.00" in text


def test_list_shows_credit_notes_in_their_own_column_without_extra_queries_per_row(
    client_of, customer, django_assert_max_num_queries
):
    invoices = [make_invoice(customer=customer) for _ in range(4)]
    notes = [credit(inv, amount=D("1.00")) for inv in invoices[:3]]
    with django_assert_max_num_queries(12) as few:
        response = client_of.get(reverse("invoices:invoice-list"))
    html = response.content.decode()
    assert "Credit notes</th>" in html
    for note in notes:
        assert reverse("invoices:credit-note-detail", args=[note.number]) in html
    more = [make_invoice(customer=customer) for _ in range(4)]
    for inv in more:
        credit(inv, amount=D("1.00"))
    with django_assert_max_num_queries(len(few.captured_queries)):
        client_of.get(reverse("invoices:invoice-list") + "?per_page=25")


def test_csv_has_a_row_per_credit_note(client_of, customer):
    invoice = make_invoice(customer=customer)
    note = credit(invoice, amount=D("11.90"))
    response = client_of.get(reverse("invoices:invoice-export-csv"))
    data = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    row = next(r for r in data if r["number"] == note.number)
    assert (row["status"], row["net"], row["tax"], row["total"]) == (
        "credit_note",
        "-10.00",
        "-1.90",
        "-11.90",
    )
    assert row["credited_invoice"] == invoice.number
    assert next(r for r in data if r["number"] == invoice.number)["credited_invoice"] == ""


def test_zip_holds_the_credit_notes_of_the_invoices_chosen(customer, client):
    client.force_login(MembershipFactory(customer=customer, role="viewer").user)
    invoice = make_invoice(customer=customer)
    other = make_invoice(customer=customer)
    note = credit(invoice, amount=D("5.00"))
    response = client.post(reverse("invoices:invoice-download-zip"), {"numbers": invoice.number})
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == sorted([f"{invoice.number}.pdf", f"{note.number}.pdf"])
    assert f"Credit note {note.number}" in pdf_text(archive.read(f"{note.number}.pdf"))
    assert other.number not in "".join(archive.namelist())


def test_german_invoice_names_its_credit_notes_and_credit_in_german(customer):
    customer.document_language = "de"
    customer.save()
    customer_balance_adjust(
        customer_id=customer.pk, currency="EUR", amount=D("9.00"), note="Kulanz", actor="s"
    )
    invoice = make_invoice(customer=customer)
    note = credit(invoice, amount=D("10.00"))
    invoice.refresh_from_db()
    text = pdf_text(invoice_pdf_document(invoice).content)
    assert "Verrechnetes Guthaben" in text
    assert f"Rechnungskorrektur {note.number} vom" in text
