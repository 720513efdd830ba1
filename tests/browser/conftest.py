"""What every browser test shares: one headless Debian Chromium per test module, and the
every-page world (tests.customer_pages) on the pages' calendar day."""

import datetime
import pathlib

import pytest
import time_machine

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not pathlib.Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def world(settings, live_server):
    """Every customer page's data (tests.customer_pages.build_world), paid through the
    sandbox, on its calendar (tests.billing.invoices.pages_support): 5 June 2026."""
    from tests.customer_pages import build_world

    settings.SITE_URL = live_server.url
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True
    with time_machine.travel(datetime.datetime(2026, 6, 5, 12, tzinfo=datetime.UTC), tick=True):
        yield build_world()
