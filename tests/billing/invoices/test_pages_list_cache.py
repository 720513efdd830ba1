"""The whole-page cache of /invoices/ (billing.page_cache): a repeat view is one query, and
every input the page shows gives a fresh page, never another one's."""

import datetime

import pytest
import time_machine
from django.test import Client

from billing.invoices import selectors
from contracts.models import Membership, Role
from tests.billing.invoices.pages_support import invoice_on, pay
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]

LIST = "/invoices/"


@pytest.fixture
def browser(customer, owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    # A first visit sets the CSRF cookie (logging in through the form does that too);
    # a browser without one is never served from, nor stored in, the cache.
    client.get(LIST)
    assert "csrftoken" in client.cookies
    return client


def _served_from_cache(response) -> bool:
    return not response.templates  # a cached page renders no template


def test_a_repeat_view_is_served_from_the_cache_with_one_query(
    browser, customer, django_assert_num_queries
):
    invoice_on(customer, datetime.date(2026, 6, 1))
    first = browser.get(LIST)
    assert not _served_from_cache(first)
    # The session comes from the cache; the user and their memberships are one query.
    with django_assert_num_queries(1):
        again = browser.get(LIST)
    assert _served_from_cache(again)
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"]


def test_each_path_is_its_own_page(browser, customer):
    invoice_on(customer, datetime.date(2026, 6, 1))
    browser.get(LIST)
    browser.get(LIST)
    filtered = browser.get(LIST, {"status": "paid"})
    assert not _served_from_cache(filtered)
    assert "No invoices match this filter." in filtered.content.decode()


def test_an_invoice_change_is_shown_on_the_next_view(browser, customer):
    invoice = invoice_on(customer, datetime.date(2026, 6, 1))
    browser.get(LIST)
    assert "Pay online" in browser.get(LIST).content.decode()
    pay(invoice)
    after = browser.get(LIST)
    assert not _served_from_cache(after)
    assert "Pay online" not in after.content.decode()


def test_a_role_change_is_shown_on_the_next_view(browser, customer, owner):
    invoice_on(customer, datetime.date(2026, 6, 1))
    browser.get(LIST)
    assert "Pay online" in browser.get(LIST).content.decode()
    Membership.objects.filter(user=owner, customer=customer).update(role=Role.VIEWER)
    html = browser.get(LIST).content.decode()
    assert "Pay online" not in html
    assert "Payment methods" not in html


def test_another_user_in_the_same_browser_gets_their_own_page(browser, customer, owner):
    invoice_on(customer, datetime.date(2026, 6, 1))
    browser.get(LIST)
    assert owner.username in browser.get(LIST).content.decode()
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    browser.force_login(viewer)
    html = browser.get(LIST).content.decode()
    assert viewer.username in html and owner.username not in html
    assert "Pay online" not in html


def test_a_renamed_customer_is_shown_on_the_next_view(browser, customer):
    browser.get(LIST)
    browser.get(LIST)
    customer.name = "Renamed Networks BV"
    customer.save(update_fields=["name"])
    assert "Renamed Networks BV" in browser.get(LIST).content.decode()


def test_the_day_an_invoice_falls_overdue_renders_afresh(browser, customer):
    invoice = invoice_on(customer, datetime.date(2026, 6, 1))
    assert invoice.due_date >= datetime.date(2026, 6, 5)
    browser.get(LIST)
    assert "badge--overdue" not in browser.get(LIST).content.decode()
    with time_machine.travel(invoice.due_date + datetime.timedelta(days=1), tick=False):
        assert "badge--overdue" in browser.get(LIST).content.decode()


def test_flash_messages_are_shown_not_cached(browser, customer, owner):
    second = MembershipFactory(user=owner, role=Role.OWNER).customer
    browser.get(LIST)
    browser.get(LIST)
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        "/account/customer/",
        {"customer": str(second.pk), "next": LIST, "csrfmiddlewaretoken": token},
        follow=True,
    )
    html = response.content.decode()
    assert f"You are now acting for {second.name}." in html
    assert not _served_from_cache(response)
    back = browser.get(LIST)
    assert f"You are now acting for {second.name}." not in back.content.decode()


def test_a_cached_page_forms_still_submit(browser, customer):
    invoice = invoice_on(customer, datetime.date(2026, 6, 1))
    browser.get(LIST)
    cached = browser.get(LIST)
    assert _served_from_cache(cached)
    html = cached.content.decode()
    form = html[html.index('id="download-form"') :]
    action = form.split('action="')[1].split('"')[0]
    token = form.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    response = browser.post(action, {"numbers": [invoice.number], "csrfmiddlewaretoken": token})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"


def test_a_failing_cache_serves_rendered_pages(browser, customer, monkeypatch):
    invoice_on(customer, datetime.date(2026, 6, 1))
    browser.get(LIST)

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(selectors.cache, "get_many", broken)
    response = browser.get(LIST)
    assert response.status_code == 200
    assert not _served_from_cache(response)


def test_the_code_fingerprint_follows_templates(settings, tmp_path):
    from config import release

    (tmp_path / "templates").mkdir()
    page = tmp_path / "templates" / "page.html"
    page.write_text("<p>one</p>")
    settings.BASE_DIR = tmp_path
    release.code_fingerprint.cache_clear()
    try:
        before = release.code_fingerprint()
        page.write_text("<p>two</p>")
        release.code_fingerprint.cache_clear()
        assert release.code_fingerprint() != before
    finally:
        release.code_fingerprint.cache_clear()


def test_each_cached_entry_is_one_round_trip_with_its_version(browser, customer, monkeypatch):
    """The version comes with every entry, not from a read of its own per entry."""
    invoice_on(customer, datetime.date(2026, 6, 1))
    browser.get(LIST)  # page and body stored
    calls = []
    real_get, real_get_many = selectors.cache.get, selectors.cache.get_many

    inside_get_many = []  # locmem's get_many calls get per key: not a round trip of its own

    def get(key, *args, **kwargs):
        if not inside_get_many:
            calls.append(("get", key))
        return real_get(key, *args, **kwargs)

    def get_many(keys, *args, **kwargs):
        calls.append(("get_many", tuple(keys)))
        inside_get_many.append(True)
        try:
            return real_get_many(keys, *args, **kwargs)
        finally:
            inside_get_many.pop()

    monkeypatch.setattr(selectors.cache, "get", get)
    monkeypatch.setattr(selectors.cache, "get_many", get_many)
    assert _served_from_cache(browser.get(LIST))
    billing_calls = [c for c in calls if "invoices:" in str(c[1])]
    assert [kind for kind, _ in billing_calls] == ["get_many"]

    calls.clear()
    other = Client()
    other.force_login(customer.memberships.get().user)
    other.cookies["csrftoken"] = "b" * 32  # another browser: a new page around the cached body
    assert not _served_from_cache(other.get(LIST))
    billing_calls = [c for c in calls if "invoices:" in str(c[1])]
    assert [kind for kind, _ in billing_calls] == ["get_many", "get_many"]  # page, body
