"""The invoice list's body cache (issue 20): a repeat view is served from the cache under a
version that database triggers change with every write of what the list shows, so no
write — a service, the ORM, queryset.update(), raw SQL, another app's table — can leave a
stale body behind. A cache that is down means a computed page, never an error."""

import datetime
import re
from decimal import Decimal
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.collections.models import InvoiceReport
from billing.invoices import list_cache, selectors, triggers
from billing.invoices.credit_notes import credit_note_issue
from billing.invoices.models import Invoice, InvoiceLine, InvoiceListVersion
from billing.payments import services as payment_services
from billing.payments.models import Payment, PaymentKind
from config.cache import ResilientRedisCache, reset_breakers
from contracts.models import Role
from tests.billing.invoices.pages_support import invoice_on, pay
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]

LIST = "/invoices/"
DAY = datetime.date(2026, 5, 1)


@pytest.fixture
def client_owner(client, owner):
    client.force_login(owner)
    return client


def version(customer) -> int:
    return InvoiceListVersion.objects.get(customer=customer).version


def get(client, params=None):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(LIST, params or {})
    assert response.status_code == 200
    return response, len(ctx.captured_queries)


def body(response) -> str:
    """The page between the start of the body and the CSRF forms (what is cached)."""
    html = response.content.decode()
    return html[html.index('<div class="page-head">') : html.index('<form id="pay-form"')]


def test_a_repeat_view_is_the_cached_body_and_one_query(client_owner, customer):
    invoice_on(customer, DAY)
    first, computed = get(client_owner)
    second, cached = get(client_owner)
    assert "invoices" in first.context and "invoices" not in second.context  # not computed
    assert body(second) == body(first)
    # The user with memberships and the customer's list version in one query (the session
    # is cached); the computed view adds the totals and the rows.
    assert cached == 1
    assert computed == 3
    # The shell is rendered every time: a fresh CSRF token in the forms.
    assert 'name="csrfmiddlewaretoken"' in second.content.decode()


def test_the_key_holds_the_query_the_language_and_the_role(client, customer):
    invoice_on(customer, DAY)
    owner = MembershipFactory(customer=customer, role=Role.OWNER).user
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(owner)
    get(client)
    assert "Pay online" in get(client)[0].content.decode()
    assert get(client, {"status": "paid"})[1] == 3  # another query: computed
    assert get(client, {"status": "paid"})[1] == 1
    # The body again, in German: computed, but the totals (numbers, no words) are the
    # English view's: the user and the rows, no totals statement.
    client.cookies["django_language"] = "de"
    german, queries = get(client)
    assert queries == 2 and german.content.decode().count('lang="de"')
    client.cookies["django_language"] = "en"
    client.force_login(viewer)
    as_viewer, queries = get(client)
    assert queries == 2  # a viewer's body has no Pay online: computed
    assert "Pay online" not in body(as_viewer)


def test_another_page_of_a_filter_seen_skips_the_totals(client_owner, customer):
    for day in range(1, 13):
        invoice_on(customer, datetime.date(2026, 5, day))
    first, queries = get(client_owner, {"per_page": "10"})
    assert queries == 3
    following = unescape(re.search(r'href="\?([^"]*)" rel="next"', body(first)).group(1))
    with CaptureQueriesContext(connection) as ctx:
        second = client_owner.get(f"{LIST}?{following}")
    # The user and the rows: count and cards are the first page's, same version.
    assert len(ctx.captured_queries) == 2
    assert second.context["count"] == first.context["count"] == 12
    assert second.context["summary"] == first.context["summary"]
    pay(Invoice.objects.filter(customer=customer, status="open").first())
    with CaptureQueriesContext(connection) as ctx:
        third = client_owner.get(f"{LIST}?{following}")
    assert len(ctx.captured_queries) == 3  # after a write: body and totals computed again
    assert third.context["summary"] != first.context["summary"]


def test_unknown_parameters_share_the_body(client_owner, customer):
    invoice_on(customer, DAY)
    get(client_owner)
    assert get(client_owner, {"utm_source": "mail"})[1] == 1


# --- every kind of write changes the version ------------------------------------------


def _processing(invoice):
    payment = payment_services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
    )
    Payment.objects.filter(pk=payment.pk).update(status="processing")


def _report(invoice):
    InvoiceReport.objects.create(invoice=invoice, reason="other", description="Wrong amount")


def _resolve_report(invoice):
    _report(invoice)
    InvoiceReport.objects.filter(invoice=invoice).update(
        status="rejected", resolved_at=datetime.datetime(2026, 6, 5, tzinfo=datetime.UTC)
    )


def _raw_sql(invoice):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE invoices_invoice SET status = 'void' WHERE id = %s", [invoice.pk])


def _line_description(invoice):
    InvoiceLine.objects.filter(invoice=invoice).update(description="Renamed line")


def _block_prefix(invoice):
    block = InvoiceLine.objects.filter(invoice=invoice, block__isnull=False).first().block
    type(block).objects.filter(pk=block.pk).update(prefix="198.51.100.0/24")


def _delete_draft(invoice):
    draft = invoice_on(invoice.customer, DAY, finalize=False)
    before = version(invoice.customer)
    draft.lines.all().delete()
    draft.delete()
    assert version(invoice.customer) != before


def _save(invoice):
    invoice.due_date += datetime.timedelta(days=1)
    invoice.save()


WRITES = {
    "new invoice (ORM, services)": lambda inv: invoice_on(inv.customer, DAY),
    "payment (service)": pay,
    "save()": _save,
    "queryset.update()": lambda inv: Invoice.objects.filter(pk=inv.pk).update(
        amount_paid=Decimal("1.00")
    ),
    "raw SQL": _raw_sql,
    "delete": _delete_draft,
    "credit note (service)": lambda inv: credit_note_issue(
        invoice_id=inv.pk, reason="Goodwill", settle="credit", actor="t", amount=Decimal("5.00")
    ),
    "report opened": _report,
    "report resolved": _resolve_report,
    "bank debit processing": _processing,
    "line description (search)": _line_description,
    "block prefix (search)": _block_prefix,
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_every_kind_of_write_changes_the_version_and_the_page(client_owner, customer, write):
    invoice = invoice_on(customer, DAY)
    get(client_owner)
    before = version(customer)
    write(invoice)
    assert version(customer) != before
    after, queries = get(client_owner)
    assert queries == 3  # computed, not the cached body
    assert "invoices" in after.context


def test_what_the_rows_show_is_never_stale(client_owner, customer):
    invoice = invoice_on(customer, DAY)
    get(client_owner)
    get(client_owner)
    _processing(invoice)
    assert "Payment processing" in body(get(client_owner)[0])
    _report(invoice)
    assert "Under review" in body(get(client_owner)[0])
    note = credit_note_issue(
        invoice_id=invoice.pk, reason="Goodwill", settle="credit", actor="t", amount=Decimal("5")
    )
    assert note.number in body(get(client_owner)[0])
    _raw_sql(invoice)
    assert "badge--void" in body(get(client_owner)[0])


def test_a_write_without_anything_the_list_shows_keeps_the_version(customer):
    invoice = invoice_on(customer, DAY)
    before = version(customer)
    Invoice.objects.filter(pk=invoice.pk).update(state_version=invoice.state_version + 1)
    Invoice.objects.get(pk=invoice.pk).save()  # updated_at only
    Payment.objects.none().update(status="failed")
    assert version(customer) == before


def test_another_customers_write_keeps_the_version(customer, other_customer):
    invoice_on(customer, DAY)
    before = version(customer)
    invoice_on(other_customer, DAY)
    assert version(customer) == before


def test_every_column_the_rows_load_is_watched():
    rows = selectors.invoice_list_rows(Invoice.objects.all())
    loaded, _ = rows.query.deferred_loading
    assert set(loaded) == set(selectors.LIST_ROW_FIELDS)
    columns = {Invoice._meta.get_field(name).column for name in loaded} - {"id"}
    assert columns <= set(triggers.INVOICE_COLUMNS)
    # The filters and sorts read these too.
    assert {"status", "issue_date", "due_date", "number", "total"} <= set(triggers.INVOICE_COLUMNS)


def test_a_new_customer_gets_a_version_with_its_first_invoice(customer):
    InvoiceListVersion.objects.filter(customer=customer).delete()
    invoice_on(customer, DAY)
    assert InvoiceListVersion.objects.filter(customer=customer).exists()


def test_a_customer_without_a_version_is_computed_every_time(client_owner, customer):
    invoice_on(customer, DAY)
    InvoiceListVersion.objects.filter(customer=customer).delete()
    assert get(client_owner)[1] == 3
    assert get(client_owner)[1] == 3


# --- the cache down -------------------------------------------------------------------


@pytest.fixture
def cache_down(monkeypatch, settings):
    """The body cache on a Redis that does not answer, behind the portal's breaker."""
    settings.CACHE_BREAKER_SECONDS = 60
    reset_breakers()
    down = ResilientRedisCache(
        "redis://127.0.0.1:1/0",
        {"OPTIONS": {"socket_connect_timeout": 0.05, "socket_timeout": 0.05}},
    )
    monkeypatch.setattr(list_cache, "cache", down)
    yield down
    reset_breakers()


def test_the_page_renders_with_the_cache_down(client_owner, customer, cache_down):
    invoice = invoice_on(customer, DAY)
    first, queries = get(client_owner)
    second, again = get(client_owner)
    assert queries == again == 3  # computed both times
    assert invoice.number in body(first) and body(second) == body(first)
