"""Save a test IBAN with its SEPA mandate in the sandbox, then charge one contract to it
(headless Chromium): the payment methods page shows the bank, the mandate and its wording;
the contract page shows and changes the contract's method."""

import os

import pytest

from billing.payments.models import ContractPaymentMethod, PaymentMethod
from tests.browser.test_pages_browser import ARTIFACTS
from tests.factories import MembershipFactory, UserFactory, make_contract

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def contract(settings, live_server):
    settings.SITE_URL = live_server.url
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True
    user = UserFactory(username="banker@example.com")
    user.set_password("browser-password")
    user.save()
    customer = MembershipFactory(user=user, customer__name="Bank Browser GmbH").customer
    return make_contract(customer)


def test_save_an_iban_with_its_mandate_and_charge_a_contract_to_it(
    browser,
    live_server,
    contract,
):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{live_server.url}/payment-methods/")
    page.get_by_label("E-mail").fill("banker@example.com")
    page.get_by_label("Password").fill("browser-password")
    page.get_by_role("button", name="Log in").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Add a card or bank account").click()
    sync_api.expect(page.get_by_text("TEST MODE", exact=False).first).to_be_visible()
    page.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
    page.get_by_label("I accept the SEPA Direct Debit mandate above").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Save bank account").click()

    main = page.locator("main")
    sync_api.expect(main).to_contain_text("SEPA Direct Debit · Commerzbank")
    sync_api.expect(main).to_contain_text("•••• 3000")
    method = PaymentMethod.objects.get()
    sync_api.expect(main).to_contain_text(f"mandate {method.mandate_reference}")
    page.get_by_text("Mandate text you accepted").click()
    sync_api.expect(main).to_contain_text("to debit your account")
    page.screenshot(path=str(ARTIFACTS / "bank-method-saved.png"), full_page=True)

    page.goto(f"{live_server.url}/contracts/{contract.pk}/")
    sync_api.expect(main).to_contain_text("Charged to your default method, SEPA Direct Debit")
    page.get_by_label("Charge this contract to").select_option(str(method.pk))
    with page.expect_navigation():
        page.get_by_role("button", name="Change").click()
    sync_api.expect(main).to_contain_text("Charged to SEPA Direct Debit · Commerzbank •••• 3000.")
    page.screenshot(path=str(ARTIFACTS / "contract-method.png"), full_page=True)
    assert ContractPaymentMethod.objects.get(contract=contract).method == method
