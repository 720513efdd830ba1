"""The invoice pages in headless Chromium: filter, keyboard menu, downloads, CSV."""

import csv
import io
import os
import pathlib
import zipfile

import pytest

from billing.invoices.models import InvoiceStatus
from tests.billing.invoices.pages_support import every_status, invoice_on
from tests.factories import MembershipFactory, UserFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def account(db):
    import datetime

    user = UserFactory(username="dana@example.com")
    user.set_password("browser-password")
    user.save()
    customer = MembershipFactory(user=user, customer__name="Browser Networks GmbH").customer
    invoices = every_status(customer)
    for day in (2, 3, 4):
        invoices[f"open{day}"] = invoice_on(customer, datetime.date(2026, 7, day))
    return user, invoices


def _login(page, live_server):
    page.goto(f"{live_server.url}/invoices/")
    page.get_by_label("E-mail").fill("dana@example.com")
    page.get_by_label("Password").fill("browser-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/invoices/")


def test_invoice_list_flow(browser, live_server, account):
    _user, invoices = account
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, live_server)
    sync_api.expect(page.get_by_role("heading", name="My Invoices")).to_be_visible()

    page.get_by_label("Status").select_option("open")
    with page.expect_navigation():
        page.get_by_role("button", name="Apply").click()
    assert "status=open" in page.url, page.url
    open_numbers = {inv.number for inv in invoices.values() if inv.status == InvoiceStatus.OPEN}
    shown = set(
        page.locator("tbody tr[data-invoice]").evaluate_all(
            "rows => rows.map(r => r.dataset.invoice)"
        )
    )
    assert shown == open_numbers and len(shown) == 5
    page.screenshot(path=str(ARTIFACTS / "invoice-list.png"), full_page=True)

    # The first row's menu, by keyboard only.
    first = page.locator("tbody tr[data-invoice]").first
    number = first.get_attribute("data-invoice")
    summary = first.locator("summary")
    summary.focus()
    page.keyboard.press("Enter")
    # The menu script sets the state on the toggle event: wait for it, do not race it.
    sync_api.expect(summary).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "View"
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Download pdf"
    pdf_href = page.evaluate("document.activeElement.getAttribute('href')")
    assert pdf_href == f"/invoices/{number}/pdf/"
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Pay online"
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Download XML (XRechnung)"
    xml_href = page.evaluate("document.activeElement.getAttribute('href')")
    assert xml_href == f"/invoices/{number}/xml/"
    page.keyboard.press("Escape")
    sync_api.expect(summary).to_have_attribute("aria-expanded", "false")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"

    summary.focus()
    page.keyboard.press("Enter")
    with page.expect_download() as info:
        first.get_by_role("menuitem", name="Download pdf").click()
    assert pathlib.Path(info.value.path()).read_bytes().startswith(b"%PDF")

    boxes = page.locator('tbody input[name="numbers"]')
    for i in range(3):
        boxes.nth(i).check()
    assert page.locator('input[name="numbers"]:checked').count() == 3
    with page.expect_download() as info:
        page.get_by_role("button", name="Download selected").click()
    archive = zipfile.ZipFile(info.value.path())
    assert len(archive.namelist()) == 3
    assert all(archive.read(n).startswith(b"%PDF") for n in archive.namelist())

    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    text = pathlib.Path(info.value.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["number"] for r in rows} == open_numbers
    assert {r["status"] for r in rows} == {"open"}

    page.goto(f"{live_server.url}/invoices/{number}/")
    sync_api.expect(page.get_by_text("will be cancelled on")).to_be_visible()
    sync_api.expect(page.get_by_role("button", name="Pay online")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "invoice-detail.png"), full_page=True)
    context.close()


def test_row_menu_works_without_javascript(browser, live_server, account):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    _login(page, live_server)
    first = page.locator("tbody tr[data-invoice]").first
    first.locator("summary").click()
    view = first.get_by_role("menuitem", name="View")
    sync_api.expect(view).to_be_visible()
    view.click()
    page.wait_for_url("**/invoices/*/")
    sync_api.expect(page.get_by_role("heading", level=2, name="Summary")).to_be_visible()
    context.close()


def test_narrow_screen_screenshot(browser, live_server, account):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    _login(page, live_server)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "invoice-list-mobile.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1, "the page itself must not scroll sideways; tables scroll in place"
    context.close()
