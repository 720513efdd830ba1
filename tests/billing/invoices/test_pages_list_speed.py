"""The invoice list without tricks (issue 20): count and summary cards from the rollup,
keyset pages (next, previous, last, a date), bad cursors, and query counts that grow
neither with the customer's invoices nor with how deep the page is."""

import base64
import datetime
import json
import re
from html import unescape

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from billing.invoices import selectors, services
from billing.invoices.models import Invoice, InvoiceStatus
from tests.billing.invoices.pages_support import every_status, expected_order, invoice_on, pay

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]

LIST = "/invoices/"
TODAY = datetime.date(2026, 6, 5)


@pytest.fixture
def client_owner(client, owner):
    client.force_login(owner)
    return client


def _recount(customer, **dates):
    return selectors.invoice_summary_direct(
        customer, today=TODAY, date_from=dates.get("date_from"), date_to=dates.get("date_to")
    )


def _refs(response) -> list[str]:
    return [inv.ref for inv in response.context["invoices"]]


def _link(response, rel: str) -> str | None:
    """The href of the pagination link named `rel` (First, Previous, Next, Last)."""
    html = response.content.decode()
    nav = html[html.index('class="pagination"') :]
    found = re.search(r'<a href="([^"]*)"[^>]*>' + rel + "</a>", nav)
    return LIST + unescape(found.group(1)) if found else None


def test_summary_and_count_follow_every_write_even_without_a_service(client_owner, customer):
    invoices = every_status(customer)
    first = client_owner.get(LIST)
    assert first.context["summary"] == _recount(customer)
    assert first.context["count"] == 7

    pay(invoices["open"])
    services.invoice_mark_uncollectible(invoice_id=invoices["overdue"].pk, actor="t")
    invoice_on(customer, datetime.date(2026, 5, 20))
    second = client_owner.get(LIST)
    assert second.context["summary"] == _recount(customer) != first.context["summary"]
    assert second.context["count"] == 8

    # A write that no service made (an UPDATE by hand, a data migration): the database
    # triggers keep the rollup all the same.
    Invoice.objects.filter(pk=invoices["paid"].pk).update(status=InvoiceStatus.REFUND)
    third = client_owner.get(LIST, {"status": "paid"})
    assert third.context["count"] == customer.invoices.filter(status="paid").count()
    assert third.context["summary"] == _recount(customer)


@pytest.mark.parametrize(
    "dates",
    [
        {"date_from": "2026-02-15"},
        {"date_to": "2026-04-10"},
        {"date_from": "2026-01-01", "date_to": "2026-03-31"},
        {"date_from": "2026-02-02", "date_to": "2026-02-20"},
        {"date_from": "2026-03-01", "date_to": "2026-06-04"},
    ],
)
def test_a_date_range_cut_through_months_counts_and_sums_exactly(client_owner, customer, dates):
    every_status(customer)
    for day in (1, 14, 15, 28):
        invoice_on(customer, datetime.date(2026, 2, day), price="10.00")
    response = client_owner.get(LIST, dates)
    parsed = {k: datetime.date.fromisoformat(v) for k, v in dates.items()}
    assert response.context["summary"] == _recount(customer, **parsed)
    qs = customer.invoices.all()
    if "date_from" in parsed:
        qs = qs.filter(issue_date__gte=parsed["date_from"])
    if "date_to" in parsed:
        qs = qs.filter(issue_date__lte=parsed["date_to"])
    assert response.context["count"] == qs.count()


def test_overdue_earlier_this_month_is_counted(client_owner, customer):
    # Due 2026-06-02 (before today, 06-05) and 2026-06-20: only the first is overdue.
    late = invoice_on(customer, datetime.date(2026, 5, 19))
    soon = invoice_on(customer, datetime.date(2026, 6, 6))
    Invoice.objects.filter(pk=late.pk).update(due_date=datetime.date(2026, 6, 2))
    Invoice.objects.filter(pk=soon.pk).update(due_date=datetime.date(2026, 6, 20))
    response = client_owner.get(LIST, {"status": "overdue"})
    assert response.context["count"] == 1
    assert _refs(response) == [late.ref]
    assert response.context["summary"] == _recount(customer)


@pytest.mark.parametrize("sort", ["-date", "date", "number", "-amount", "status", "due", "-due"])
def test_next_and_previous_walk_every_invoice_once(client_owner, customer, sort):
    every_status(customer)
    for i in range(6):
        invoice_on(customer, datetime.date(2025, 1, 1 + i), price=f"{10 + i % 3}.00")
    expected = expected_order(
        customer.invoices.all(), sort.removeprefix("-"), descending=sort.startswith("-")
    )
    pages, url, params = [], LIST, {"sort": sort, "per_page": "10"}
    while url:
        response = client_owner.get(url, params)
        params = None
        pages.append(_refs(response))
        url = _link(response, "Next")
    assert [ref for page in pages for ref in page] == expected
    assert len(pages) == 2

    back = client_owner.get(_link(response, "Previous"))
    assert _refs(back) == pages[0]
    assert _link(back, "Previous") is None

    last = client_owner.get(_link(back, "Last"))
    assert _refs(last) == expected[-10:]
    assert _link(last, "Next") is None
    assert _refs(client_owner.get(_link(last, "Previous"))) == expected[:3]


def test_jump_to_a_date(client_owner, customer):
    made = [invoice_on(customer, datetime.date(2025, 1, 1 + i)) for i in range(8)]
    response = client_owner.get(LIST, {"jump": "2025-01-05", "per_page": "10"})
    assert _refs(response) == [inv.ref for inv in reversed(made[:5])]
    assert _link(response, "Previous") is not None  # newer invoices come before
    assert _refs(client_owner.get(_link(response, "Previous"))) == [
        inv.ref for inv in reversed(made[5:])
    ]
    ascending = client_owner.get(LIST, {"jump": "2025-01-05", "sort": "date"})
    assert _refs(ascending) == [inv.ref for inv in made[4:]]
    assert _link(ascending, "Previous") is not None  # older invoices come before
    # Past the newest invoice: nothing before it. That look reads ids only (the rows'
    # flag subqueries are for the rows shown).
    with CaptureQueriesContext(connection) as ctx:
        newest_first = client_owner.get(LIST, {"jump": "2025-02-01"})
    assert _refs(newest_first) == [inv.ref for inv in reversed(made)]
    assert _link(newest_first, "Previous") is None
    looks = [q["sql"] for q in ctx.captured_queries if q["sql"].rstrip().endswith("LIMIT 1")]
    assert looks and not any("EXISTS" in look for look in looks)
    # Only the date sort can jump to a date: another sort says so and starts at the top.
    other = client_owner.get(LIST, {"jump": "2025-01-05", "sort": "amount"})
    assert any("date" in note for note in other.context["query"].notes)
    assert len(_refs(other)) == 8


def _cursor(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "x" * 500,
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _cursor({"a": 1}),
        _cursor(["a", "-date", "2026-13-01", 1]),
        _cursor(["a", "-date", "2026-01-01", -1]),
        _cursor(["a", "-date", "2026-01-01", True]),
        _cursor(["a", "-date", "2026-01-01", 2**70]),
        _cursor(["a", "-amount", "NaN", 1]),
        _cursor(["a", "-amount", None, 1]),
        _cursor(["z", "-date", "2026-01-01", 1]),
        _cursor(["a", "password", "x", 1]),
        _cursor(["a", "amount", "1.00", 1]),  # a cursor of another sort order
    ],
)
def test_a_bad_cursor_shows_the_first_page_with_a_note(client_owner, customer, cursor):
    every_status(customer)
    response = client_owner.get(LIST, {"cursor": cursor})
    assert response.status_code == 200
    assert any("not valid" in note for note in response.context["query"].notes)
    assert _refs(response) == _refs(client_owner.get(LIST))


def test_old_page_links_still_work(client_owner, customer):
    made = [invoice_on(customer, datetime.date(2025, 1, 1 + i)) for i in range(12)]
    page2 = client_owner.get(LIST, {"per_page": "10", "page": "2"})
    assert _refs(page2) == [made[1].ref, made[0].ref]
    assert _link(page2, "Previous") is not None and _link(page2, "Next") is None
    beyond = client_owner.get(LIST, {"per_page": "10", "page": "99999"})
    assert _refs(beyond) == _refs(page2)
    assert any("no page 99999" in note for note in beyond.context["query"].notes)


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, params).status_code == 200
    return len(ctx.captured_queries)


def test_queries_grow_neither_with_rows_nor_with_the_page(client_owner, customer, settings):
    # Computed views (the body cache off; its repeat views: test_list_body_cache.py).
    settings.INVOICE_LIST_CACHE_SECONDS = 0
    for i in range(3):
        invoice_on(customer, datetime.date(2025, 1, 1 + i))
    few = _queries(client_owner, LIST, {"per_page": "10"})
    for i in range(30):
        invoice_on(customer, datetime.date(2025, 2, 1 + i % 28), price=f"{10 + i}.00")
    Invoice.objects.filter(customer=customer).update(amount_paid=F("total") / 2)
    first = client_owner.get(LIST, {"per_page": "10"})
    many = _queries(client_owner, LIST, {"per_page": "10"})
    deep = _queries(client_owner, _link(first, "Next"))
    deeper = _queries(client_owner, _link(client_owner.get(_link(first, "Next")), "Next"))
    last = _queries(client_owner, _link(first, "Last"))
    assert few == many == deep == deeper == last
    # The user with memberships, the totals statement (rollup and its bounded
    # corrections), the rows with their flags and credit notes; the session is cached.
    assert many == 3


def test_a_search_counts_its_ids_without_another_query(client_owner, customer, settings):
    settings.INVOICE_LIST_CACHE_SECONDS = 0  # computed views
    invoices = [invoice_on(customer, datetime.date(2025, 3, 1 + i)) for i in range(3)]
    number = invoices[1].number
    alone = client_owner.get(LIST, {"q": number})
    assert alone.context["count"] == 1 and _refs(alone) == [number]
    # The user with memberships, the search's ids, the totals, the rows: the id list is
    # the count. With another filter the count is one more (bounded) query.
    assert _queries(client_owner, LIST, {"q": number}) == 4
    filtered = client_owner.get(LIST, {"q": number, "status": "paid"})
    assert filtered.context["count"] == 0
    assert _queries(client_owner, LIST, {"q": number, "status": "paid"}) == 5


def test_only_a_text_that_can_begin_a_prefix_searches_the_blocks(client_owner, customer, settings):
    from tests.factories import make_contract, make_invoice

    settings.INVOICE_LIST_CACHE_SECONDS = 0
    invoice = make_invoice(make_contract(customer))
    prefix = invoice.lines.get().block.prefix
    # A line whose text no longer names its block is still found by the block's prefix.
    invoice.lines.update(description="Address space")
    start = prefix.rsplit(".", 2)[0]  # "10.0" of "10.0.5.0/24"
    with CaptureQueriesContext(connection) as by_prefix:
        assert _refs(client_owner.get(LIST, {"q": start})) == [invoice.ref]
    with CaptureQueriesContext(connection) as by_number:
        assert _refs(client_owner.get(LIST, {"q": invoice.number})) == [invoice.ref]
    block_table = "contracts_ipblock"
    assert any(block_table in q["sql"] for q in by_prefix.captured_queries)
    assert not any(block_table in q["sql"] for q in by_number.captured_queries)


def test_old_page_links_find_their_place_through_the_month_counts(client_owner, customer, settings):
    """?page=N sorted by issue date under no filter or a status is placed through the
    rollup's counts per month; every page must hold what reading the list from the top
    would put there (drafts first when newest first, ties by id), as the index walk does
    for the other sorts and filters."""
    settings.INVOICE_LIST_CACHE_SECONDS = 0
    d = datetime.date
    made = []
    for i in range(24):  # four months, two invoices on some days
        made.append(invoice_on(customer, d(2025, 1 + i // 6, 1 + (i % 6) // 2 * 9)))
    made += [invoice_on(customer, d(2025, 5, 2), finalize=False) for _ in range(3)]
    for invoice in made[::3]:
        if invoice.status == InvoiceStatus.OPEN:
            pay(invoice)
    for invoice in made:
        invoice.refresh_from_db()
    filters = {"": made, "paid": [i for i in made if i.status == InvoiceStatus.PAID]}
    filters["open"] = [i for i in made if i.status == InvoiceStatus.OPEN]
    filters["draft"] = [i for i in made if i.status == InvoiceStatus.DRAFT]
    for status, invoices in filters.items():
        for sort in ("-date", "date", "-amount"):
            key = sort.removeprefix("-")
            order = expected_order(invoices, key, descending=sort.startswith("-"))
            for page in range(2, len(order) // 10 + 2):
                params = {"status": status, "sort": sort, "per_page": "10", "page": str(page)}
                got = _refs(client_owner.get(LIST, params))
                assert got == order[(page - 1) * 10 : page * 10], (status, sort, page)
    # The month's place is one read of the rollup and one within the month.
    with CaptureQueriesContext(connection) as ctx:
        client_owner.get(LIST, {"per_page": "10", "page": "2"})
    assert any("invoices_invoicerollup" in q["sql"] and "issue_month" in q["sql"]
               and "GROUP BY" in q["sql"] for q in ctx.captured_queries)  # fmt: skip
