"""Every customer page in Chromium at desktop (1280x800) and phone (390x844) width.

On each page: no template syntax in the visible text, no sideways scrolling of the page,
no serious or critical axe-core violation, and on the phone every visible control a
finger can hit (≥ 44 px). A full-page screenshot of each lands in
test-artifacts/screenshots/<variant>/ (desktop, phone, de-desktop, de-phone; CI keeps
test-artifacts/ as an artefact); people look at them, the test cannot.

axe-core is vendored (tests/browser/vendor/axe.min.js, see AXE_VERSION) so the suite runs
offline and every run uses the same rules.
"""

import os
import pathlib

import pytest
from django.conf import settings
from django.test import Client

from tests.customer_pages import (
    LONELY,
    OWNER,
    PASSWORD,
    VIEWER,
    FormPage,
    template_syntax_in,
)

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
AXE = pathlib.Path(__file__).resolve().parent / "vendor" / "axe.min.js"
AXE_VERSION = "4.14.1"
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
TOUCH_MIN = 44

_AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => `${v.id} (${v.impact}): `
      + v.nodes.slice(0, 4).map(n => n.target.join(" ")).join(" | "));
}"""

# Controls a finger must be able to hit on a phone; inline links inside sentences are exempt
# (WCAG 2.5.8's inline exception), so only stand-alone controls are measured.
_SMALL_TARGETS = """(min) => {
  const selector = "button, .button, summary, input[type=checkbox], input[type=radio], select, "
    + "input[type=text], input[type=search], input[type=email], input[type=password], "
    + "input[type=url], input[type=date], .site-nav a, .pagination a, [role=menuitem], "
    + ".hosted__back, .result__links a, .account__customer";
  const small = [];
  for (const el of document.querySelectorAll(selector)) {
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height || getComputedStyle(el).visibility === "hidden") continue;
    if (el.closest("details:not([open]) > :not(summary)")) continue;
    // A checkbox or radio counts with its label, as a finger hits either.
    let h = box.height, w = box.width;
    if (el.type === "checkbox" || el.type === "radio") {
      const cell = el.closest("td, .radio, label") || el;
      const c = cell.getBoundingClientRect();
      h = Math.max(h, c.height);
      w = Math.max(w, c.width);
    }
    if (h < min - 0.5 || w < min - 0.5) {
      const label = (el.innerText || el.value || el.name || "").trim().slice(0, 30);
      small.push(`${el.tagName.toLowerCase()} "${label}" ${Math.round(w)}x${Math.round(h)}`);
    }
  }
  return small.slice(0, 8);
}"""


class Checker:
    """Runs the checks on each page and collects every problem, so one run lists them all."""

    def __init__(self, width_name: str):
        self.width_name = width_name
        self.problems: list[str] = []
        self.seen: list[str] = []
        self.dir = SCREENSHOTS / width_name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.axe = AXE.read_text()

    def check(self, page, name: str) -> None:
        page.wait_for_load_state("load")
        self.seen.append(name)
        where = f"[{self.width_name}] {name} ({page.url})"
        text = page.evaluate("document.body.innerText")
        found = template_syntax_in(text)
        if found:
            self.problems.append(f"{where}: template syntax {found} in the visible text")
        wide = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        if wide[0] > wide[1]:
            self.problems.append(f"{where}: the page scrolls sideways ({wide[0]} > {wide[1]} px)")
        # Evaluated, not injected as a <script>: the portal's CSP forbids inline scripts.
        page.evaluate(self.axe + "\n;0")
        for violation in page.evaluate(_AXE_RUN):
            self.problems.append(f"{where}: axe {violation}")
        if self.width_name == "phone":
            for small in page.evaluate(_SMALL_TARGETS, TOUCH_MIN):
                self.problems.append(f"{where}: touch target under {TOUCH_MIN}px: {small}")
        page.screenshot(path=str(self.dir / f"{name}.png"), full_page=True)

    def visit(self, page, base: str, name: str, path: str) -> None:
        page.goto(f"{base}{path}")
        self.check(page, name)

    def submit(self, page, base: str, form: FormPage) -> None:
        """The page a form answers with, reached as a person reaches it."""
        page.goto(f"{base}{form.path}")
        for field, value in form.data.items():
            if isinstance(value, list):
                for v in value:
                    page.locator(f'input[name="{field}"][value="{v}"]').check()
            else:
                page.locator(f'[name="{field}"]').fill(value)
        with page.expect_navigation():
            page.locator(form.submit).click()
        self.check(page, form.name)


def _login(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("E-mail").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def _logout(page) -> None:
    page.locator(".account-menu summary").click()
    with page.expect_navigation():
        # The menu's one button, whatever the language calls it.
        page.locator('.account-menu button[role="menuitem"]').click()


def _account_menu_and_sandbox_pages(page, base: str, checker: Checker, world) -> None:
    """Pages reached by clicking, in the same steps in either language: the account menu
    open, the sandbox's checkout (declined too) and its page to save a card, logged out."""
    page.locator(".account-menu summary").click()
    checker.check(page, "account-menu-open")
    page.keyboard.press("Escape")

    page.goto(f"{base}/invoices/{world.invoices['big'].number}/pay/")
    with page.expect_navigation():
        page.locator('main form[action$="/pay/"]:not(.pay-saved) button').click()
    checker.check(page, "sandbox-checkout")
    page.locator("#card").fill("4000 0000 0000 0002")
    page.locator('button[name="action"][value="pay"]').click()
    page.get_by_role("alert").wait_for()
    checker.check(page, "sandbox-checkout-declined")
    page.goto(f"{base}/payment-methods/")
    with page.expect_navigation():
        page.locator('input[name="action"][value="add"] + button').click()
    checker.check(page, "sandbox-save-card")

    page.goto(f"{base}/invoices/")
    _logout(page)
    page.get_by_role("status").wait_for()
    checker.check(page, "logged-out")


@pytest.mark.parametrize("width_name", list(WIDTHS))
def test_every_customer_page(browser, live_server, world, width_name):
    width, height = WIDTHS[width_name]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    base = live_server.url
    checker = Checker(width_name)

    for name, path in world.public_pages + world.link_pages:
        checker.visit(page, base, name, path)

    _login(page, base, OWNER)
    for name, path in world.member_pages:
        checker.visit(page, base, name, path)
    for form in world.member_forms:
        checker.submit(page, base, form)

    # The list's row menu, opened: its items must be on screen, not cut off.
    _row_menu_open(page, base, checker, width, width_name)
    _account_menu_and_sandbox_pages(page, base, checker, world)
    sync_api.expect(page.get_by_role("status")).to_contain_text("You are logged out")

    _login(page, base, VIEWER)
    for name, path in world.viewer_pages:
        checker.visit(page, base, name, path)
    _logout(page)
    _login(page, base, LONELY)
    for name, path in world.lonely_pages:
        checker.visit(page, base, name, path)
    context.close()

    assert not checker.problems, "\n".join(checker.problems)
    assert len(checker.seen) == len(_every_name(world)), sorted(
        set(_every_name(world)) - set(checker.seen)
    )


def _every_name(world) -> list[str]:
    """Every page either run checks: the world's pages and the ones reached by clicking."""
    pages = world.public_pages + world.link_pages + world.member_pages + world.viewer_pages
    clicked = ["invoice-list-menu-open", "account-menu-open", "sandbox-checkout"]
    clicked += ["sandbox-checkout-declined", "sandbox-save-card", "logged-out"]
    return (
        [n for n, _ in pages + world.lonely_pages] + [f.name for f in world.member_forms] + clicked
    )


def _row_menu_open(page, base: str, checker: Checker, width: int, width_name: str) -> None:
    """The list's row menu on the phone: number, amount, status and ⋮ stay on screen, and
    so do the menu's items once it is open."""
    page.goto(f"{base}/invoices/?status=open")
    row = page.locator("tbody tr[data-invoice]").first
    for part in ("td.col-number", "td.col-amount", "td.col-status", "summary"):
        box = row.locator(part).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (width_name, part)
    row.locator("summary").click()
    checker.check(page, "invoice-list-menu-open")
    for item in row.get_by_role("menuitem").all():
        box = item.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (width_name, box)
    page.keyboard.press("Escape")


def _session_for(username: str) -> str:
    """A logged-in session without the login form (its labels are not what this test reads)."""
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.mark.parametrize("width_name", list(WIDTHS))
def test_every_customer_page_in_german(browser, live_server, world, width_name):
    """The same checks with the language switcher's cookie set to German: German words are
    longer, and nothing may scroll sideways or get cut off. Screenshots in
    test-artifacts/screenshots/de-desktop/ and de-phone/. Sessions come from the test
    client rather than the log-in form, so the steps find buttons by selector, not by
    their (English) names."""
    width, height = WIDTHS[width_name]
    context = browser.new_context(viewport={"width": width, "height": height})
    base = live_server.url
    context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": "de", "url": base}])
    page = context.new_page()
    checker = Checker(f"de-{width_name}")
    for name, path in world.public_pages + world.link_pages:
        checker.visit(page, base, name, path)
    _as(context, base, OWNER)
    for name, path in world.member_pages:
        checker.visit(page, base, name, path)
        assert page.locator("html").get_attribute("lang") == "de", name
    for form in world.member_forms:
        checker.submit(page, base, form)
    _row_menu_open(page, base, checker, width, width_name)
    _account_menu_and_sandbox_pages(page, base, checker, world)
    sync_api.expect(page.get_by_role("status")).to_contain_text("Sie sind abgemeldet")
    _as(context, base, VIEWER)
    for name, path in world.viewer_pages:
        checker.visit(page, base, name, path)
    _as(context, base, LONELY)
    for name, path in world.lonely_pages:
        checker.visit(page, base, name, path)
    context.close()
    assert not checker.problems, "\n".join(checker.problems)
    assert len(checker.seen) == len(_every_name(world)), sorted(
        set(_every_name(world)) - set(checker.seen)
    )


def _as(context, base: str, username: str) -> None:
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": _session_for(username), "url": base}]
    )
