"""The hosted invoice page (what the PDF's Pay online link opens) and receipts."""

import datetime
import io
import re
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from pypdf import PdfReader

from billing.invoices.documents.content import line_description
from billing.invoices.links import pay_token
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import PaymentKind
from billing.payments.receipts import invoice_receipts
from contracts.models import Role
from core import l10n
from tests.billing.invoices.pages_support import pay
from tests.factories import MembershipFactory, make_contract, make_invoice

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


@pytest.fixture
def big(customer):
    """Three blocks at 4,500.00 each: thousands separators and several lines."""
    return make_invoice(
        make_contract(customer, blocks=3, price="4500.00", started_on=datetime.date(2026, 6, 1))
    )


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def _pdf_text(content: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_the_hosted_page_shows_what_stripes_does(client, big, settings):
    token = pay_token(big)
    page = client.get(f"/invoices/{big.number}/pay/", {"token": token})
    assert page.status_code == 200
    text = _text(page)
    assert settings.SELLER["name"] in text and settings.SELLER["vat_id"] in text
    assert f"Invoice {big.number}" in text and "Open" in text
    for line in big.lines.all():  # as the PDF writes a lease line, period and all
        assert " ".join(line_description(line).split()) in text
    assert "4,500.00" in text and "13,500.00 EUR" in text, "thousands separators"
    assert f"{big.tax:,.2f} EUR" in text and f"Total {big.total:,.2f} EUR" in text
    assert f"Due {l10n.date(big.due_date)}" in text
    assert "Continue to payment" in text
    # Forwarded to whoever pays the bills: the customer's own details stay off the page.
    assert big.customer.name not in text and big.customer.address_line1 not in text
    pdf_link = re.search(r'href="([^"]*/pay/pdf/[^"]*)"', page.content.decode()).group(1)
    pdf = client.get(pdf_link.replace("&amp;", "&"))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf["Content-Disposition"] == f'attachment; filename="{big.number}.pdf"'


def test_the_pdf_link_names_one_invoice(client, customer, big):
    other = make_invoice(customer=customer)
    assert (
        client.get(f"/invoices/{other.number}/pay/pdf/", {"token": pay_token(big)}).status_code
        == 404
    )
    assert client.get(f"/invoices/{big.number}/pay/pdf/", {"token": "forged"}).status_code == 404
    assert client.get(f"/invoices/{big.number}/pay/pdf/").status_code == 404


def test_a_member_sees_who_is_billed_and_the_account_pdf(client, owner, big):
    client.force_login(owner)
    text = _text(client.get(f"/invoices/{big.number}/pay/"))
    assert "Billed to" in text and big.customer.name in text
    assert (
        f"/invoices/{big.number}/pdf/"
        in client.get(f"/invoices/{big.number}/pay/").content.decode()
    )


def test_the_hosted_page_costs_the_same_queries_for_one_line_or_many(
    client, customer, django_assert_max_num_queries
):
    one = make_invoice(make_contract(customer, blocks=1))
    many = make_invoice(make_contract(customer, blocks=8))
    pay(one)
    for invoice in (one, many):
        with django_assert_max_num_queries(8):
            client.get(f"/invoices/{invoice.number}/pay/", {"token": pay_token(invoice)})


def _pay_in_two_parts(invoice):
    """100.00 now, the rest later: two receipts."""
    first = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payments.payment_record_success(
        payment_id=first.pk,
        actor="t",
        amount_received=Decimal("100.00"),
        currency_received=invoice.currency,
        brand="mastercard",
        last4="4444",
    )
    return pay(invoice)


def test_receipts_say_amount_date_method_invoice_and_what_remained(client, big):
    _pay_in_two_parts(big)
    first, second = invoice_receipts(big)
    assert (first.amount, first.remaining_after, first.method) == (
        Decimal("100.00"),
        big.total - Decimal("100.00"),
        "Mastercard •••• 4444",
    )
    assert (second.amount, second.remaining_after, second.method) == (
        big.total - Decimal("100.00"),
        Decimal("0.00"),
        "Visa •••• 4242",
    )
    token = pay_token(big)
    page = client.get(
        f"/invoices/{big.number}/payments/{first.payment.pk}/receipt/", {"token": token}
    )
    text = _text(page)
    assert "Amount paid 100.00 EUR" in text
    assert f"Remaining after this payment {big.total - 100:,.2f} EUR" in text
    assert "Mastercard •••• 4444" in text and big.number in text
    assert f"Date paid {l10n.date(first.paid_at)}" in text

    pdf = client.get(
        f"/invoices/{big.number}/payments/{second.payment.pk}/receipt.pdf", {"token": token}
    )
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == f'attachment; filename="receipt-{big.number}-2.pdf"'
    pdf_text = _pdf_text(pdf.content)
    assert "Receipt" in pdf_text and big.number in pdf_text
    assert f"{second.amount:,.2f} EUR" in pdf_text and "Visa •••• 4242" in pdf_text
    assert "0.00 EUR" in pdf_text


def test_a_receipt_needs_the_link_or_membership(client, customer, other_customer, big):
    receipt = invoice_receipts(pay(big))[0]
    url = f"/invoices/{big.number}/payments/{receipt.payment.pk}/receipt/"
    assert client.get(url)["Location"].startswith("/accounts/login/")
    assert client.get(url, {"token": pay_token(make_invoice(customer=customer))}).status_code == 404
    stranger = MembershipFactory(customer=other_customer).user
    client.force_login(stranger)
    assert client.get(url).status_code == 404
    assert client.get(url.replace("receipt/", "receipt.pdf")).status_code == 404
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    assert client.get(url).status_code == 200, "every member may read receipts"


def test_no_receipt_for_a_failed_payment(client, owner, big):
    payment = payments.payment_create(
        invoice_id=big.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
    )
    payments.payment_record_failure(payment_id=payment.pk, actor="t", code="x", message="no")
    client.force_login(owner)
    assert client.get(f"/invoices/{big.number}/payments/{payment.pk}/receipt/").status_code == 404
    assert invoice_receipts(big) == []


def test_the_invoice_page_links_each_receipt(client, owner, big):
    _pay_in_two_parts(big)
    client.force_login(owner)
    html = client.get(f"/invoices/{big.number}/").content.decode()
    for receipt in invoice_receipts(big):
        assert f"/invoices/{big.number}/payments/{receipt.payment.pk}/receipt/" in html
        assert f"/invoices/{big.number}/payments/{receipt.payment.pk}/receipt.pdf" in html


def test_after_paying_the_return_page_says_paid_and_offers_the_receipt(client, big):
    token = pay_token(big)
    pay(big)
    page = client.get(f"/invoices/{big.number}/pay/done/", {"token": token})
    text = _text(page)
    assert "Paid. Thank you for your payment." in text
    assert f"Amount paid {big.total:,.2f} EUR" in text and "Visa •••• 4242" in text
    assert "View receipt" in text and "Download receipt PDF" in text
    assert urlencode({"token": token}) in page.content.decode(), "no login: links keep the token"
    again = _text(client.get(f"/invoices/{big.number}/pay/", {"token": token}))
    assert "no longer needs paying" in again and "Receipt for" in again
    assert big.customer.name not in text


def test_messages_print_amounts_with_thousands_separators(client, owner, big):
    from tests.factories import PaymentMethodFactory

    method = PaymentMethodFactory(customer=big.customer)
    client.force_login(owner)
    # The sandbox pays the whole amount: the message is the paid one; the rest of the page,
    # and the pay page before, print the grouped amount.
    text = _text(client.get(f"/invoices/{big.number}/pay/"))
    assert f"Pay {big.amount_remaining:,.2f} EUR now" in text
    client.post(f"/invoices/{big.number}/pay/", {"payment_method": method.provider_id})
    big.refresh_from_db()
    assert big.status == InvoiceStatus.PAID
