"""The list's cached counts and summary cards follow every service change; deep pages
read from the other end and still show the same rows as a plain OFFSET would."""

import datetime

import pytest

from billing.invoices import selectors, services
from billing.invoices.models import InvoiceStatus
from tests.billing.invoices.pages_support import every_status, expected_order, invoice_on, pay

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]

LIST = "/invoices/"


@pytest.fixture
def client_owner(client, owner):
    client.force_login(owner)
    return client


def _recount(customer):
    today = datetime.date(2026, 6, 5)
    return selectors._invoice_summary(customer, today=today, date_from=None, date_to=None)


def test_cached_summary_and_count_follow_service_changes(client_owner, customer):
    invoices = every_status(customer)
    first = client_owner.get(LIST)
    assert first.context["summary"] == _recount(customer)
    assert first.context["page"].paginator.count == 7

    pay(invoices["open"])
    services.invoice_mark_uncollectible(invoice_id=invoices["overdue"].pk, actor="t")
    invoice_on(customer, datetime.date(2026, 5, 20))

    second = client_owner.get(LIST)
    assert second.context["summary"] == _recount(customer) != first.context["summary"]
    assert second.context["page"].paginator.count == 8
    opened = client_owner.get(LIST, {"status": "open"})
    assert (
        opened.context["page"].paginator.count
        == customer.invoices.filter(status=InvoiceStatus.OPEN).count()
    )


def test_cache_failure_falls_back_to_the_database(client_owner, customer, monkeypatch):
    every_status(customer)

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(selectors.cache, "get", broken)
    response = client_owner.get(LIST)
    assert response.status_code == 200
    assert response.context["page"].paginator.count == 7


@pytest.mark.parametrize("sort", ["-date", "date", "number", "-amount", "status", "due", "-due"])
def test_every_page_matches_a_plain_offset(client_owner, customer, sort):
    every_status(customer)
    for i in range(6):
        invoice_on(customer, datetime.date(2025, 1, 1 + i))
    expected = expected_order(
        customer.invoices.all(), sort.removeprefix("-"), descending=sort.startswith("-")
    )
    seen = []
    for page in (1, 2, 3, 4, 5):
        response = client_owner.get(LIST, {"sort": sort, "per_page": "10", "page": str(page)})
        seen += [inv.ref for inv in response.context["invoices"]]
        if not response.context["page"].has_next():
            break
    assert seen == expected


def _row(html: str, number: str) -> str:
    start = html.index(f'data-invoice="{number}"')
    return html[start : html.index("</tr>", start)]


def test_cached_rows_follow_service_changes(client_owner, customer, django_assert_max_num_queries):
    invoice = invoice_on(customer, datetime.date(2026, 6, 1))
    first = client_owner.get(LIST).content.decode()
    assert "Pay online" in _row(first, invoice.number)
    with django_assert_max_num_queries(5):
        again = client_owner.get(LIST).content.decode()
    assert _row(again, invoice.number) == _row(first, invoice.number)

    pay(invoice)
    after = _row(client_owner.get(LIST).content.decode(), invoice.number)
    assert "badge--paid" in after and "Pay online" not in after


def test_cached_rows_carry_no_csrf_token_so_any_browser_may_be_served_them(client, customer, owner):
    from django.middleware.csrf import _unmask_cipher_token
    from django.test import Client

    invoice = invoice_on(customer, datetime.date(2026, 6, 1))

    def page(browser) -> str:
        browser.force_login(owner)
        return browser.get(LIST).content.decode()

    def pay_form_secret(html: str) -> str:
        form = html[html.index('id="pay-form"') :]
        masked = form.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
        return _unmask_cipher_token(masked)

    first, second = page(client), page(Client())
    for html in (first, second):
        rows = html[html.index("<tbody>") : html.index("</tbody>")]
        assert "csrfmiddlewaretoken" not in rows
        assert f'formaction="/invoices/{invoice.number}/pay/"' in rows
    assert pay_form_secret(first) != pay_form_secret(second), "each browser its own token"
    assert pay_form_secret(page(client)) == pay_form_secret(first)
