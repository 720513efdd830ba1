"""Which language the pages of the PDF's pay link speak (docs/decisions.md, "Pages in German").

The holder of the link reads the invoice's document language, the language of the PDF they
came from, whatever their browser says; the language switcher's cookie is an explicit choice
and wins. A member paying from the portal (no link) gets the page in their own language.
"""

import io
import re

import pytest
from django.conf import settings
from pypdf import PdfReader

from billing.invoices.links import pay_token
from billing.payments.receipts import invoice_receipts
from tests.billing.invoices.pages_support import pay
from tests.factories import make_invoice

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


def _invoice(customer, language: str):
    customer.document_language = language
    customer.save()
    invoice = make_invoice(customer=customer)
    assert invoice.document_language == language  # the snapshot taken when it was issued
    return invoice


def _german(value) -> str:
    return f"{value:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")


def _lang(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.content.decode()).group(1)


def test_the_link_speaks_the_invoice_language_whatever_the_browser_says(client, customer):
    invoice = _invoice(customer, "de")
    url = f"/invoices/{invoice.number}/pay/?token={pay_token(invoice)}"
    page = client.get(url, headers={"accept-language": "en"})
    assert page.status_code == 200 and _lang(page) == "de"
    assert page["Content-Language"] == "de"
    html = page.content.decode()
    assert "Weiter zur Zahlung" in html and "Rechnung <span" in html
    assert f'Gesamtbetrag</th><td class="num">{_german(invoice.total)} EUR' in html
    assert re.search(f"(Fällig am|Überfällig seit) {invoice.due_date:%d\\.%m\\.%Y}", html)
    # An English invoice stays English for a German browser.
    english = _invoice(customer, "en")
    page = client.get(
        f"/invoices/{english.number}/pay/?token={pay_token(english)}",
        headers={"accept-language": "de"},
    )
    assert _lang(page) == "en" and "Continue to payment" in page.content.decode()


def test_the_switcher_cookie_wins_over_the_invoice_language(client, customer):
    invoice = _invoice(customer, "de")
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = client.get(
        f"/invoices/{invoice.number}/pay/?token={pay_token(invoice)}",
        headers={"accept-language": "de"},
    )
    assert _lang(page) == "en" and "Continue to payment" in page.content.decode()
    # The switcher itself sets that cookie, and the page follows it from then on.
    client.cookies.clear()
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    page = client.get(f"/invoices/{invoice.number}/pay/?token={pay_token(invoice)}")
    assert _lang(page) == "en"


def test_the_paid_cancelled_and_receipt_pages_of_the_link_follow_the_same_rule(client, customer):
    invoice = pay(_invoice(customer, "de"))
    token = pay_token(invoice)
    receipt = invoice_receipts(invoice)[0]
    for path in (
        f"/invoices/{invoice.number}/pay/done/",
        f"/invoices/{invoice.number}/pay/cancelled/",
        f"/invoices/{invoice.number}/payments/{receipt.payment.pk}/receipt/",
    ):
        page = client.get(path, {"token": token}, headers={"accept-language": "en"})
        assert page.status_code == 200 and _lang(page) == "de", path
    assert "Beleg" in page.content.decode()


def test_a_member_without_the_link_reads_the_pay_page_in_their_own_language(
    client, owner, customer
):
    invoice = _invoice(customer, "de")
    client.force_login(owner)
    page = client.get(f"/invoices/{invoice.number}/pay/", headers={"accept-language": "en"})
    assert _lang(page) == "en" and "Continue to payment" in page.content.decode()


def test_the_receipt_pdf_is_in_the_invoice_language_even_from_an_english_page(client, customer):
    invoice = pay(_invoice(customer, "de"))
    receipt = invoice_receipts(invoice)[0]
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    pdf = client.get(
        f"/invoices/{invoice.number}/payments/{receipt.payment.pk}/receipt.pdf",
        {"token": pay_token(invoice)},
    )
    assert pdf.status_code == 200
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Beleg" in text and "Zahlungsmethode" in text and "Deutschland" in text
    assert f"{_german(receipt.amount)} {invoice.currency} bezahlt" in text
    assert "Receipt" not in text
