"""Every action by keyboard alone, with focus visible at every stop.

No mouse click anywhere in this file: focus moves with Tab and Shift+Tab (and the arrow
keys inside a menu, as the ARIA menu pattern has it), and controls are used with Enter,
Space and Escape. Each stop Tab makes is also checked for a visible focus indicator: an
outline or box-shadow on the focused element, or an outline its container draws with
:focus-within (the invoice cards). page.goto stands for typing an address.
"""

import os

import pytest

from billing.invoices.models import InvoiceStatus
from billing.payments.models import PaymentMethod
from tests.customer_pages import OWNER, PASSWORD

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Whether the focused element shows where focus is, and what it is (for the failure text).
_FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const drawn = (e) => {
    const s = getComputedStyle(e);
    const outline = s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0
      && s.outlineColor !== "rgba(0, 0, 0, 0)";
    return outline || s.boxShadow !== "none";
  };
  let visible = drawn(el);
  for (let e = el.parentElement; !visible && e && e !== document.body; e = e.parentElement) {
    // A container's outline counts only while it is there because of this focus.
    if (e.matches(":focus-within") && drawn(e)) {
      const s = getComputedStyle(e);
      visible = s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0;
    }
  }
  const label = (el.innerText || el.value || el.getAttribute("aria-label") || el.name || "")
    .trim().replace(/\\s+/g, " ").slice(0, 40);
  const id = el.id ? "#" + el.id : (el.className ? "." + String(el.className).split(" ")[0] : "");
  return {tag: el.tagName.toLowerCase(), what: `${el.tagName.toLowerCase()}${id} "${label}"`,
          visible: visible, focusVisible: el.matches(":focus-visible")};
}"""


class Keyboard:
    """Moves focus with Tab / Shift+Tab and remembers every stop whose focus is not seen."""

    def __init__(self, page):
        self.page = page
        self.unseen: list[str] = []
        self.stops: list[dict] = []

    def _stop(self) -> dict | None:
        focus = self.page.evaluate(_FOCUS)
        if focus:
            self.stops.append(focus)
            if not focus["visible"]:
                self.unseen.append(f"{self.page.url}: {focus['what']}")
        return focus

    def tab_to(self, selector: str, *, back: bool = False, limit: int = 150) -> None:
        """Tab (or Shift+Tab) until the focused element matches `selector`."""
        for _ in range(limit):
            self.page.keyboard.press("Shift+Tab" if back else "Tab")
            self._stop()
            if self.page.evaluate("s => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"{selector} not reached by {'Shift+Tab' if back else 'Tab'}")

    def press(self, key: str, *, navigates: bool = False) -> None:
        if navigates:
            with self.page.expect_navigation():
                self.page.keyboard.press(key)
        else:
            self.page.keyboard.press(key)

    def focused_text(self) -> str:
        return self.page.evaluate("document.activeElement.innerText.trim()")


def _log_in(keys: Keyboard, base: str) -> None:
    keys.page.goto(f"{base}/accounts/login/")
    keys.tab_to("#id_username")
    keys.page.keyboard.type(OWNER)
    keys.tab_to("#id_password")
    keys.page.keyboard.type(PASSWORD)
    keys.press("Enter", navigates=True)
    assert keys.page.url == f"{base}/invoices/", keys.page.url


@pytest.fixture
def keys(browser, live_server, world):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    keyboard = Keyboard(context.new_page())
    _log_in(keyboard, live_server.url)
    yield keyboard
    context.close()
    assert not keyboard.unseen, "focus not visible at:\n" + "\n".join(keyboard.unseen)


def test_account_menu_reaches_log_out(keys, live_server):
    page = keys.page
    keys.tab_to(".account-menu summary")
    summary = page.locator(".account-menu summary")
    keys.press("Enter")
    sync_api.expect(summary).to_have_attribute("aria-expanded", "true")
    keys.press("Escape")  # closes and gives focus back to the button
    sync_api.expect(summary).to_have_attribute("aria-expanded", "false")
    assert page.evaluate("document.activeElement.matches('.account-menu summary')")
    keys.press("Space")
    sync_api.expect(summary).to_have_attribute("aria-expanded", "true")
    seen = []
    for _ in range(8):
        keys.press("ArrowDown")
        keys._stop()
        seen.append(keys.focused_text())
        if seen[-1] == "Log out":
            break
    assert seen[:-1] == ["Billing details", "Payment methods", "API tokens", "Webhooks", "Activity"]
    keys.press("Enter", navigates=True)
    sync_api.expect(page.get_by_role("status")).to_contain_text("You are logged out")


def test_invoice_row_menu_opens_the_invoice(keys, live_server, world):
    page = keys.page
    keys.tab_to("tbody tr[data-invoice] summary")
    row = page.locator("tbody tr[data-invoice]").first
    number = row.get_attribute("data-invoice")
    keys.press("Enter")
    sync_api.expect(row.locator("summary")).to_have_attribute("aria-expanded", "true")
    keys.press("ArrowDown")
    assert keys.focused_text() == "View"
    keys._stop()
    keys.press("Enter", navigates=True)
    assert page.url.endswith(f"/invoices/{number}/"), page.url


def test_pay_online_from_the_invoice_to_paid(keys, live_server, world):
    page, invoice = keys.page, world.invoices["open"]
    page.goto(f"{live_server.url}/invoices/{invoice.number}/")
    keys.tab_to(f'form[action="/invoices/{invoice.number}/pay/"] button')
    keys.press("Enter", navigates=True)
    assert "/sandbox/checkout/" in page.url, page.url
    keys.tab_to("#card")
    page.keyboard.type("4242 4242 4242 4242")
    keys.tab_to('button[name="action"][value="pay"]')
    keys.press("Enter", navigates=True)
    assert page.url.startswith(f"{live_server.url}/invoices/{invoice.number}/pay/done/")
    sync_api.expect(page.locator(".result__title")).to_have_text(
        "Paid. Thank you for your payment."
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_remove_a_payment_method_through_its_confirmation(keys, live_server, world):
    page = keys.page
    card = PaymentMethod.objects.get(customer=world.membership.customer, last4="4444")
    page.goto(f"{live_server.url}/payment-methods/")
    keys.tab_to(f'a[href="/payment-methods/{card.pk}/remove/"]')
    keys.press("Enter", navigates=True)
    # Past the button to "Keep it", then back: Shift+Tab works as well.
    keys.tab_to("main a.button")
    assert keys.focused_text() == "Keep it"
    keys.tab_to('main button[type="submit"]', back=True)
    keys.press("Space", navigates=True)
    assert page.url == f"{live_server.url}/payment-methods/"
    sync_api.expect(page.get_by_role("status")).to_be_visible()
    assert not PaymentMethod.objects.filter(pk=card.pk).exists()


def test_switch_language_with_the_header_switch(keys, live_server):
    page = keys.page
    keys.tab_to('.language-switch button[value="de"]')
    keys.press("Enter", navigates=True)
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.url == f"{live_server.url}/invoices/"
    keys.tab_to('.language-switch button[value="en"]')
    keys.press("Space", navigates=True)
    assert page.locator("html").get_attribute("lang") == "en"


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_every_stop_shows_focus(browser, live_server, world, viewport):
    """Tab through every control of a few pages: each one shows where focus is. The menus'
    buttons (summary elements) and plain buttons are among them, so :focus-visible from
    static/css/portal.css is seen to apply to both."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    keys = Keyboard(context.new_page())
    base = live_server.url
    _log_in(keys, base)
    invoice = world.invoices["open"]
    pages = ["/invoices/", f"/invoices/{invoice.number}/", "/payment-methods/"]
    pages += [f"/invoices/{invoice.number}/pay/", "/settings/tokens/"]
    for path in pages:
        keys.page.goto(f"{base}{path}")
        first = None
        for _ in range(250):
            keys.page.keyboard.press("Tab")
            focus = keys._stop()
            if focus is None:
                continue
            if first is None:
                first = focus["what"]
            elif focus["what"] == first:
                break  # round the page once
        else:
            raise AssertionError(f"{path}: Tab never came back to {first}")
    context.close()
    tags = {stop["tag"] for stop in keys.stops}
    assert {"summary", "button", "a", "input", "select"} <= tags, tags
    # :focus-visible itself applies to the menus' summaries and to buttons.
    assert all(s["focusVisible"] for s in keys.stops if s["tag"] in ("summary", "button"))
    assert len(keys.stops) > 60, len(keys.stops)
    assert not keys.unseen, "focus not visible at:\n" + "\n".join(keys.unseen)
