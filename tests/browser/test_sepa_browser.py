"""Pay an EUR invoice by SEPA Direct Debit in the sandbox (headless Chromium): the return page
and the invoice say "Payment processing"; once the worker's delayed task has run, "Paid"."""

import os

import pytest

from billing.invoices.models import InvoiceStatus
from billing.payments import tasks
from tests.browser.test_pages_browser import ARTIFACTS
from tests.browser.test_pay_browser import _open_checkout, payer  # noqa: F401 - fixture

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pay_by_sepa_processing_then_paid(browser, live_server, payer, monkeypatch):  # noqa: F811
    queued = []
    monkeypatch.setattr(
        tasks.sandbox_settle_debit,
        "apply_async",
        lambda args, countdown=None: queued.append(tuple(args)),
    )
    assert payer.currency == "EUR"
    page = _open_checkout(browser, live_server, payer)
    page.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
    with page.expect_navigation():
        page.get_by_role("button", name="by direct debit").click()
    sync_api.expect(page.get_by_role("status")).to_contain_text("Payment processing")
    page.goto(f"{live_server.url}{payer.get_absolute_url()}")
    sync_api.expect(page.locator("main")).to_contain_text("Payment processing")
    page.screenshot(path=str(ARTIFACTS / "sepa-processing.png"), full_page=True)
    payer.refresh_from_db()
    assert payer.status == InvoiceStatus.OPEN

    (args,) = queued
    tasks.sandbox_settle_debit(*args)  # the worker, after SANDBOX_DEBIT_DELAY_SECONDS
    page.reload()
    sync_api.expect(page.locator("h1")).to_contain_text("Paid")
    sync_api.expect(page.locator("main")).not_to_contain_text("Payment processing")
    page.screenshot(path=str(ARTIFACTS / "sepa-paid.png"), full_page=True)
    payer.refresh_from_db()
    assert payer.status == InvoiceStatus.PAID and payer.amount_paid == payer.total
