"""Billing details in headless Chromium: an owner edits them, a bad VAT id is refused
with its reason, and the next invoice carries the new details (issued ones do not)."""

import os

import pytest

from tests.browser.test_pages_browser import ARTIFACTS
from tests.factories import VALID_TAX_IDS, MembershipFactory, UserFactory, make_contract
from tests.factories import make_invoice as bill

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def owner_with_contract(db):
    user = UserFactory(username="details@example.com")
    user.set_password("browser-password")
    user.save()
    customer = MembershipFactory(user=user, customer__name="Old Name GmbH").customer
    contract = make_contract(customer)
    issued = bill(contract)
    return contract, issued


def test_owner_edits_details_and_the_next_invoice_shows_them(
    browser,
    live_server,
    owner_with_contract,
):
    contract, issued = owner_with_contract
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{live_server.url}/invoices/")
    page.get_by_label("E-mail").fill("details@example.com")
    page.get_by_label("Password").fill("browser-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/invoices/")

    # Billing details is in the account menu (issue 18).
    page.locator(".account-menu summary").click()
    page.get_by_role("menuitem", name="Billing details").click()
    sync_api.expect(page.get_by_role("heading", name="Billing details")).to_be_visible()
    sync_api.expect(page.get_by_text("Invoices already issued keep")).to_be_visible()

    page.get_by_label("Legal name").fill("Alpen Netz GmbH")
    page.get_by_label("Address (optional)", exact=True).fill("Ringstraße 1")
    page.get_by_label("Postal code").fill("1010")
    page.get_by_label("City").fill("Wien")
    page.get_by_label("Country").select_option("AT")
    page.get_by_label("Further billing e-mails").fill("ap@alpen.example\ncfo@alpen.example")
    page.get_by_label("Purchase order reference").fill("PO-4711")
    page.get_by_label("VAT id or GSTIN").fill("ATU 1358 5628")  # one digit off
    page.get_by_role("button", name="Save billing details").click()
    sync_api.expect(page.get_by_text("Nothing was saved")).to_be_visible()
    sync_api.expect(page.get_by_text("its check digit does not match")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "billing-details-error.png"), full_page=True)

    page.get_by_label("VAT id or GSTIN").fill(
        f"{VALID_TAX_IDS['AT'][:5]} {VALID_TAX_IDS['AT'][5:]}"
    )
    page.get_by_role("button", name="Save billing details").click()
    sync_api.expect(page.get_by_text("Billing details saved")).to_be_visible()
    history = page.locator(".history")
    sync_api.expect(history).to_contain_text("Old Name GmbH")
    sync_api.expect(history).to_contain_text("Alpen Netz GmbH")
    sync_api.expect(history).to_contain_text("ATU13585627")
    page.screenshot(path=str(ARTIFACTS / "billing-details.png"), full_page=True)

    # The billing run issues the next period's invoice with the new details.
    contract.refresh_from_db()
    later = bill(contract)
    page.goto(f"{live_server.url}/invoices/{later.number}/")
    detail = page.locator("main")
    sync_api.expect(detail).to_contain_text("Billed to Alpen Netz GmbH, VAT id ATU13585627")
    sync_api.expect(detail).to_contain_text("Your order reference PO-4711")
    sync_api.expect(detail).to_contain_text("Reverse charge")

    page.goto(f"{live_server.url}/invoices/{issued.number}/")
    sync_api.expect(page.locator("main")).to_contain_text("Billed to Old Name GmbH")
    sync_api.expect(page.locator("main")).not_to_contain_text("PO-4711")
