import pytest
from billing.invoices.documents.pdf import credit_note_pdf_document, credit_note_xrechnung
from tests.billing.invoices.document_cases import CASES, case_credit_note, case_free_credit_note, case_invoice
from billing.invoices.documents.pdf import invoice_pdf_document

pytestmark = pytest.mark.django_db

def test_scratch():
    for case in CASES:
        for lang in ("en", "de"):
            note = case_credit_note(case, lang)
            open(f"/tmp/cn/{case}-{lang}.pdf", "wb").write(credit_note_pdf_document(note).content)
            open(f"/tmp/cn/{case}-{lang}.xml", "wb").write(credit_note_xrechnung(note))
        note = case_free_credit_note(case, "de")
        open(f"/tmp/cn/free-{case}.pdf", "wb").write(credit_note_pdf_document(note).content)
    for lang in ("en", "de"):
        inv = case_invoice("domestic", lang)
        open(f"/tmp/cn/invoice-{lang}.pdf", "wb").write(invoice_pdf_document(inv).content)
