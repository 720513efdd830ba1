"""/api/docs/ in a real browser: Swagger UI renders the generated document from the
packaged assets, with no request leaving the site and nothing the CSP blocks."""

import os
import pathlib

import pytest

from tests.browser.test_pages_browser import CHROMIUM_ARGS

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    if not pathlib.Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)])
def test_docs_render_every_operation_from_local_assets(browser, live_server, viewport):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    requested, problems = [], []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock-summary-path", timeout=15000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {p.replace("\u200b", "") for p in paths} == {
        "/api/invoices/",
        "/api/invoices/{id}",
        "/api/invoices/{id}/pay",
        "/api/invoices/{id}/report",
        "/api/billing_details",
        "/api/credit_notes/",
        "/api/credit_notes/{id}",
        "/api/payment_methods/",
        "/api/statement",
        "/api/activity",
        "/api/webhook_endpoints",
    }
    assert page.get_by_text("Pay invoice").count() >= 1
    foreign = [
        u for u in requested if not u.startswith(live_server.url) and not u.startswith("data:")
    ]
    assert not foreign, foreign
    assert not problems, problems
    shots = os.environ.get("SHOTS_DIR")
    if shots:
        page.screenshot(path=f"{shots}/api-docs-{viewport[0]}.png", full_page=False)
    page.close()
