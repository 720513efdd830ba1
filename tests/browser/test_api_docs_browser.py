"""/api/docs/ in a real browser: Swagger UI renders the generated document from the
packaged assets, with no request leaving the site and nothing the CSP blocks; at both
widths the page does not scroll sideways and axe-core finds nothing serious.

The customers' developers open it from the API tokens page, so it gets the every-page
checks that apply to a page whose markup is Swagger UI's (ninja's packaged copy): no touch
target sizes (its controls are its own) and no template check (it renders in the browser).
"""

import pytest

from tests.browser.test_every_page_browser import _AXE_RUN, AXE, SCREENSHOTS

sync_api = pytest.importorskip("playwright.sync_api")

# Serious axe findings in Swagger UI's own markup and stylesheet (ninja's packaged copy,
# docs/decisions.md "Swagger UI and axe"): its badges' and buttons' colours, an operation's
# header (a button inside a role=button), the unlabelled servers <select> its React code
# renders, and ninja's template's <html> without lang. Any other finding fails.
SWAGGER_OWN = {"color-contrast", "nested-interactive", "select-name", "html-has-lang"}

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_docs_render_every_operation_from_local_assets(browser, live_server, viewport, request):
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
    wide = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert wide[0] <= wide[1], f"the page scrolls sideways ({wide[0]} > {wide[1]} px)"
    page.evaluate(AXE.read_text() + "\n;0")
    found = page.evaluate(_AXE_RUN)
    assert [v for v in found if v.split(" ")[0] not in SWAGGER_OWN] == []
    variant = request.node.callspec.id
    (SCREENSHOTS / variant).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / variant / "api-docs.png"), full_page=True)
    page.close()
