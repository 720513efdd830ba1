"""Pay online in headless Chromium with the sandbox provider: list → ⋮ → Pay online →
TEST MODE checkout → back to the portal → Paid; a declined card keeps the invoice Open."""

import os
import pathlib
import re

import pytest

from billing.invoices.documents.content import line_description
from billing.invoices.models import InvoiceStatus
from tests.browser.test_pages_browser import ARTIFACTS
from tests.factories import MembershipFactory, UserFactory, make_invoice

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def payer(settings, live_server):
    # Checkout return URLs are absolute on SITE_URL: point them at the live server.
    settings.SITE_URL = live_server.url
    user = UserFactory(username="payer@example.com")
    user.set_password("browser-password")
    user.save()
    customer = MembershipFactory(user=user, customer__name="Pay Browser GmbH").customer
    return make_invoice(customer=customer)


def _open_checkout(browser, live_server, invoice):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{live_server.url}/invoices/?status=open")
    page.get_by_label("E-mail").fill("payer@example.com")
    page.get_by_label("Password").fill("browser-password")
    page.get_by_role("button", name="Log in").click()
    row = page.locator(f'tbody tr[data-invoice="{invoice.number}"]')
    row.locator("summary").click()
    with page.expect_navigation():
        row.get_by_role("menuitem", name="Pay online").click()
    sync_api.expect(page.get_by_text("TEST MODE", exact=False).first).to_be_visible()
    sync_api.expect(
        page.get_by_role("heading", name=f"Pay invoice {invoice.number}")
    ).to_be_visible()
    return page


def test_pay_online_with_the_success_card(browser, live_server, payer):
    page = _open_checkout(browser, live_server, payer)
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    with page.expect_navigation():
        page.get_by_role("button", name="Pay").first.click()
    sync_api.expect(page.get_by_role("status")).to_contain_text("Paid")
    page.screenshot(path=str(ARTIFACTS / "pay-success.png"), full_page=True)
    page.goto(f"{live_server.url}{payer.get_absolute_url()}")
    sync_api.expect(page.locator("main")).to_contain_text("Paid")
    payer.refresh_from_db()
    assert payer.status == InvoiceStatus.PAID and payer.amount_paid == payer.total


def test_a_declined_card_shows_why_and_the_invoice_stays_open(browser, live_server, payer):
    page = _open_checkout(browser, live_server, payer)
    page.get_by_label("Card number").fill("4000 0000 0000 0002")
    page.get_by_role("button", name="Pay").first.click()
    sync_api.expect(page.get_by_role("alert")).to_contain_text("declined")
    page.screenshot(path=str(ARTIFACTS / "pay-declined.png"), full_page=True)
    payer.refresh_from_db()
    assert payer.status == InvoiceStatus.OPEN and payer.amount_paid == 0
    page.goto(f"{live_server.url}{payer.get_absolute_url()}")
    sync_api.expect(page.locator("main")).to_contain_text("Your card was declined.")


def test_an_anonymous_payer_pays_from_the_pdf_link_and_gets_a_receipt(browser, live_server, payer):
    """The link printed in the PDF, opened by someone with no login (the customer's
    accountant): the hosted invoice page, the checkout, back to "Paid", the receipt."""
    from billing.invoices.documents.pdf import render_invoice_pdf_bytes, with_document_data
    from billing.invoices.models import Invoice
    from tests.billing.invoices.pdf_helpers import link_uris, pdf_text

    invoice = with_document_data(Invoice.objects.filter(pk=payer.pk)).get()
    (link,) = [u for u in link_uris(render_invoice_pdf_bytes(invoice)) if "/pay/?token=" in u]
    assert link.startswith(live_server.url)

    context = browser.new_context(viewport={"width": 390, "height": 844}, accept_downloads=True)
    page = context.new_page()
    page.goto(link)
    main = page.locator("main")
    sync_api.expect(page.get_by_role("heading", level=1)).to_contain_text(f"Invoice {payer.number}")
    sync_api.expect(main).to_contain_text("IPv4 Lease Networks GmbH")
    sync_api.expect(main).to_contain_text(f"{payer.total:,.2f} EUR")
    for line in invoice.lines.all():  # as the PDF writes a lease line, period and all
        sync_api.expect(main).to_contain_text(" ".join(line_description(line).split()))
    with page.expect_download() as info:
        page.get_by_role("link", name="Download invoice PDF").click()
    assert pathlib.Path(info.value.path()).read_bytes().startswith(b"%PDF")

    with page.expect_navigation():
        page.get_by_role("button", name="Continue to payment").click()
    sync_api.expect(page.get_by_text("TEST MODE", exact=False).first).to_be_visible()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    with page.expect_navigation():
        page.get_by_role("button", name="Pay").first.click()
    sync_api.expect(page.get_by_role("status")).to_contain_text("Paid")
    assert "/pay/done/" in page.url and "token=" in page.url
    page.screenshot(path=str(ARTIFACTS / "pay-link-paid.png"), full_page=True)

    with page.expect_navigation():
        page.get_by_role("link", name="View receipt").click()
    sync_api.expect(page.get_by_role("heading", level=1)).to_contain_text("Receipt")
    shown = " ".join(main.inner_text().split())
    assert f"Amount paid {payer.total:,.2f} EUR" in shown, shown
    assert "Payment method Visa •••• 4242" in shown and f"Invoice {payer.number}" in shown
    assert "Remaining after this payment 0.00 EUR" in shown
    with page.expect_download() as info:
        page.get_by_role("link", name="Download receipt PDF").click()
    receipt_text = pdf_text(pathlib.Path(info.value.path()).read_bytes())
    assert "Receipt" in receipt_text and payer.number in receipt_text

    # Later, the same link: the invoice says Paid and keeps the receipt.
    page.goto(link)
    sync_api.expect(main).to_contain_text("Paid")
    sync_api.expect(page.get_by_role("link", name=re.compile("^Receipt for"))).to_be_visible()
    payer.refresh_from_db()
    assert payer.status == InvoiceStatus.PAID
    context.close()
