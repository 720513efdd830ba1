import csv
import datetime
import io
import re

import pytest
from django.urls import reverse

from billing.invoices.models import InvoiceStatus
from core import l10n
from tests.billing.invoices.pages_support import (
    TODAY,
    every_status,
    expected_order,
    fail,
    invoice_on,
)
from tests.factories import MembershipFactory, make_block

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]

LIST = "/invoices/"


@pytest.fixture
def invoices(customer):
    return every_status(customer)


@pytest.fixture
def client_owner(client, owner):
    client.force_login(owner)
    return client


def rows(response) -> list[str]:
    """The refs of the invoice rows on the page, in order."""
    return [inv.ref for inv in response.context["invoices"]]


def notes(response) -> list[str]:
    return response.context["query"].notes


# --- Access -----------------------------------------------------------------------------


def test_list_requires_login(client):
    response = client.get(LIST)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_user_without_customer_is_sent_to_an_explanation(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    response = client.get(LIST, follow=True)
    assert response.redirect_chain[-1][0] == reverse("contracts:no-customer")
    assert b"not linked to a customer" in response.content


def test_list_shows_only_the_customers_invoices(client_owner, invoices, other_customer):
    foreign = invoice_on(other_customer, datetime.date(2026, 6, 1))
    response = client_owner.get(LIST)
    assert response.status_code == 200
    assert set(rows(response)) == {inv.ref for inv in invoices.values()}
    assert foreign.number not in response.content.decode()


@pytest.mark.parametrize("status", ["open", "paid", "void", "draft"])
def test_another_customers_invoice_is_404_like_a_missing_one(client_owner, other_customer, status):
    foreign = every_status(other_customer)[status]
    assert client_owner.get(f"/invoices/{foreign.ref}/").status_code == 404
    assert client_owner.get("/invoices/INV-2099-999999/").status_code == 404
    assert client_owner.get("/invoices/draft-abc/").status_code == 404


# --- Filters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("open", {"open", "overdue"}),
        ("overdue", {"overdue"}),
        ("paid", {"paid"}),
        ("draft", {"draft"}),
        ("void", {"void"}),
        ("refund", {"refund"}),
        ("uncollectible", {"uncollectible"}),
        ("", {"open", "overdue", "paid", "draft", "void", "refund", "uncollectible"}),
    ],
)
def test_status_filter(client_owner, invoices, status, expected):
    response = client_owner.get(LIST, {"status": status})
    assert response.status_code == 200
    assert set(rows(response)) == {invoices[k].ref for k in expected}
    assert notes(response) == []


def test_overdue_is_derived_from_the_due_date(client_owner, invoices):
    response = client_owner.get(LIST)
    html = response.content.decode()
    assert html.count('badge--overdue">Overdue') == 1
    assert invoices["overdue"].due_date < TODAY < invoices["open"].due_date


def test_search_by_number_description_and_block_prefix(client_owner, customer, invoices):
    number = invoices["paid"].number
    assert rows(client_owner.get(LIST, {"q": number})) == [invoices["paid"].ref]
    assert rows(client_owner.get(LIST, {"q": number[-4:]})) == [invoices["paid"].ref]

    block = make_block("203.0.113.0/24")
    from contracts import services as contract_services

    contract = contract_services.contract_create(
        customer=customer,
        block_ids=[block.pk],
        price_per_block="10.00",
        currency="EUR",
        started_on=datetime.date(2026, 5, 20),
        actor="t",
    )
    from tests.factories import make_invoice

    with_block = make_invoice(contract)
    assert rows(client_owner.get(LIST, {"q": "203.0.113"})) == [with_block.ref]
    line = with_block.lines.first()
    word = line.description.split()[0]
    assert with_block.ref in rows(client_owner.get(LIST, {"q": word.lower()}))
    assert rows(client_owner.get(LIST, {"q": "no-such-thing"})) == []


def test_search_does_not_duplicate_invoices_with_several_matching_lines(client_owner, customer):
    from tests.factories import make_contract, make_invoice

    invoice = make_invoice(make_contract(customer, blocks=3))
    assert invoice.lines.count() == 3
    response = client_owner.get(LIST, {"q": "10."})
    assert rows(response).count(invoice.ref) == 1


def test_issue_date_range(client_owner, invoices):
    response = client_owner.get(LIST, {"date_from": "2026-02-01", "date_to": "2026-04-30"})
    assert set(rows(response)) == {invoices[k].ref for k in ("refund", "void", "paid")}
    assert notes(response) == []


def test_summary_cards_per_currency_for_the_date_range(client_owner, invoices):
    response = client_owner.get(LIST)
    summary = {row.currency: row for row in response.context["summary"]}
    assert set(summary) == {"EUR", "USD"}
    eur, usd = summary["EUR"], summary["USD"]
    assert eur.paid == invoices["paid"].total
    assert eur.pending == invoices["open"].total
    assert eur.written_off == invoices["uncollectible"].total
    assert eur.overdue == 0
    assert usd.pending == usd.overdue == invoices["overdue"].total
    assert usd.paid == 0
    assert "Total Paid" in response.content.decode()

    narrowed = client_owner.get(LIST, {"date_from": "2026-04-01", "date_to": "2026-04-30"})
    (only,) = narrowed.context["summary"]
    assert (only.currency, only.paid, only.pending) == ("EUR", invoices["paid"].total, 0)


@pytest.mark.parametrize(
    "card,status",
    [
        ("paid", "paid"),
        ("pending", "open"),
        ("overdue", "overdue"),
        ("written_off", "uncollectible"),
    ],
)
def test_each_summary_card_adds_up_what_its_filter_lists(client_owner, invoices, card, status):
    """The customer can reconcile a card: it is the sum of the rows its link lists."""
    page = client_owner.get(LIST)
    body = page.content.decode()
    assert f'href="?status={status}"' in body
    listed = client_owner.get(LIST, {"status": status, "per_page": 100}).context["invoices"]
    for row in page.context["summary"]:
        owed = sum(
            (i.total if card == "paid" else i.total - i.amount_paid)
            for i in listed
            if i.currency == row.currency
        )
        assert getattr(row, card) == owed, (row.currency, card)


# --- Sorting and pages ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["number", "date", "due", "amount", "status"])
def test_every_sort_key_both_ways(client_owner, invoices, key):
    up = rows(client_owner.get(LIST, {"sort": key}))
    down = rows(client_owner.get(LIST, {"sort": f"-{key}"}))
    everything = list(invoices.values())
    assert up == expected_order(everything, key, descending=False)
    assert down == expected_order(everything, key, descending=True)
    assert len(up) == 7


def test_sort_by_amount_orders_by_total(client_owner, invoices):
    refs = rows(client_owner.get(LIST, {"sort": "amount"}))
    totals = [next(i.total for i in invoices.values() if i.ref == ref) for ref in refs]
    assert totals == sorted(totals)


def test_default_sort_is_newest_issued_first_with_drafts_on_top(client_owner, invoices):
    refs = rows(client_owner.get(LIST))
    assert refs[0] == invoices["draft"].ref
    assert refs[1:3] == [invoices["open"].ref, invoices["overdue"].ref]
    assert refs[-1] == invoices["uncollectible"].ref


def test_pagination_and_page_size(client_owner, invoices):
    first = client_owner.get(LIST, {"per_page": "10"})
    assert len(rows(first)) == 7
    assert 'rel="next"' not in first.content.decode()
    many = [invoice_on(invoices["open"].customer, datetime.date(2025, 1, 1 + i)) for i in range(5)]
    first = client_owner.get(LIST, {"per_page": "10"})
    assert len(rows(first)) == 10
    html = first.content.decode()
    href = html.split('rel="next"')[0].rsplit('<a href="', 1)[1].split('"')[0]
    page2 = client_owner.get(LIST + href.replace("&amp;", "&"))
    assert set(rows(page2)) == {many[0].ref, many[1].ref}
    assert "per_page=10" in href and "cursor=" in href


# --- Bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"status": "bogus"}, "Unknown status"),
        ({"status": "<script>"}, "Unknown status"),
        ({"date_from": "2026-13-01"}, "not a date"),
        ({"date_to": "yesterday"}, "not a date"),
        ({"date_from": "2026-06-01", "date_to": "2026-01-01"}, "backwards"),
        ({"page": "0"}, "no page"),
        ({"page": "-1"}, "no page"),
        ({"page": "abc"}, "no page"),
        ({"page": "99999"}, "no page 99999"),
        ({"page": "9" * 30}, "no page"),
        ({"sort": "password"}, "Cannot sort"),
        ({"sort": "--number"}, "Cannot sort"),
        ({"per_page": "100000"}, "not offered"),
    ],
)
def test_bad_input_renders_the_page_with_a_note(client_owner, invoices, params, fragment):
    response = client_owner.get(LIST, params)
    assert response.status_code == 200
    assert any(fragment in note for note in notes(response)), notes(response)
    html = response.content.decode()
    assert 'id="query-notes"' in html
    assert "<script>" not in html.split('id="query-notes"')[1].split("</div>")[0]
    assert len(rows(response)) >= 1


def test_backwards_range_is_swapped(client_owner, invoices):
    response = client_owner.get(LIST, {"date_from": "2026-04-30", "date_to": "2026-02-01"})
    assert set(rows(response)) == {invoices[k].ref for k in ("refund", "void", "paid")}


def test_page_beyond_the_end_shows_the_last_page(client_owner, customer, invoices):
    for day in range(1, 6):  # 12 invoices: two pages of 10
        invoice_on(customer, datetime.date(2025, 3, day))
    response = client_owner.get(LIST, {"page": "99999", "per_page": "10"})
    assert any("no page 99999" in note for note in notes(response))
    assert len(rows(response)) == 2


# --- Row menu, selection, buttons ------------------------------------------------------------


def test_row_menu_links_and_pay_button_only_when_payable(client_owner, invoices):
    html = client_owner.get(LIST).content.decode()
    assert html.count('<details class="row-menu"') == 7
    for key, inv in invoices.items():
        pay_url = f"/invoices/{inv.ref}/pay/"
        assert (pay_url in html) == (key in ("open", "overdue", "uncollectible")), key
        assert f'href="/invoices/{inv.ref}/"' in html
        assert (f"/invoices/{inv.ref}/pdf/" in html) == (key != "draft")
    assert 'name="numbers" value="' + invoices["paid"].number + '" form="download-form"' in html
    assert 'action="/invoices/download.zip"' in html


def test_viewer_sees_no_pay_online(client, customer, invoices):
    viewer = MembershipFactory(customer=customer, role="viewer").user
    client.force_login(viewer)
    html = client.get(LIST).content.decode()
    assert "/pay/" not in html
    detail = client.get(f"/invoices/{invoices['open'].ref}/").content.decode()
    assert "Pay online" not in detail


def test_export_link_carries_the_filter(client_owner, invoices):
    response = client_owner.get(LIST, {"status": "open", "q": "INV", "page": "1"})
    assert "/invoices/export.csv?status=open&amp;q=INV&amp;sort=-date" in response.content.decode()


# --- Detail -------------------------------------------------------------------------------


def test_open_invoice_detail_says_what_happens_if_unpaid(client_owner, invoices):
    invoice = invoices["open"]
    fail(invoice, "Insufficient funds.")
    html = client_owner.get(f"/invoices/{invoice.ref}/").content.decode()
    block = invoice.contract.blocks.get()
    expected_date = invoice.due_date + datetime.timedelta(days=7)
    assert (
        f"Contract {invoice.contract.reference} and blocks {block.prefix} will be cancelled on "
        f"{l10n.date(expected_date)}." in " ".join(re.sub(r"<[^>]+>", "", html).split())
    )
    assert f'action="/invoices/{invoice.ref}/pay/"' in html
    assert "Insufficient funds." in html
    assert "1 failed attempt" in html
    for text in ("Line items", "Tax breakdown", invoice.period_start.isoformat(), "VAT"):
        assert text in html


def test_paid_invoice_detail_shows_method(client_owner, invoices):
    html = client_owner.get(f"/invoices/{invoices['paid'].ref}/").content.decode()
    assert "Visa •••• 4242" in html
    assert "/pay/" not in html
    assert "will be cancelled" not in html


def test_void_says_do_not_pay(client_owner, invoices):
    html = client_owner.get(f"/invoices/{invoices['void'].ref}/").content.decode()
    assert "Do not pay it" in html
    assert "/pay/" not in html


def test_refund_shows_returned_amount_and_date(client_owner, invoices):
    invoice = invoices["refund"]
    html = client_owner.get(f"/invoices/{invoice.ref}/").content.decode()
    assert f"{invoice.amount_refunded:,.2f} {invoice.currency} was returned to you on" in html
    assert "re_test_1" not in html
    assert "Refund of" in html


def test_draft_detail_is_neither_payable_nor_downloadable(client_owner, invoices):
    invoice = invoices["draft"]
    assert invoice.status == InvoiceStatus.DRAFT and invoice.number is None
    html = client_owner.get(f"/invoices/{invoice.ref}/").content.decode()
    assert "draft" in html.lower()
    assert "/pay/" not in html and "/pdf/" not in html


# --- Query counts ---------------------------------------------------------------------------


def test_list_query_count_does_not_grow_with_rows(
    client_owner, customer, invoices, django_assert_max_num_queries
):
    with django_assert_max_num_queries(8):
        client_owner.get(LIST, {"per_page": "100"})
    for i in range(15):
        invoice_on(customer, datetime.date(2025, 1, 1 + i), blocks=2)
    with django_assert_max_num_queries(8):
        response = client_owner.get(LIST, {"per_page": "100", "q": "10."})
    assert len(rows(response)) > 15


def test_detail_query_count_does_not_grow_with_lines_and_payments(
    client_owner, customer, django_assert_max_num_queries
):
    small = invoice_on(customer, datetime.date(2026, 5, 1), blocks=1)
    big = invoice_on(customer, datetime.date(2026, 5, 2), blocks=6)
    fail(small)
    for _ in range(3):
        fail(big)
    with django_assert_max_num_queries(10) as small_ctx:
        client_owner.get(f"/invoices/{small.ref}/")
    with django_assert_max_num_queries(10) as big_ctx:
        client_owner.get(f"/invoices/{big.ref}/")
    assert len(big_ctx.captured_queries) == len(small_ctx.captured_queries)


# --- CSV ---------------------------------------------------------------------------------


def read_csv(response) -> list[dict]:
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_export_streams_every_row_of_the_filter(client_owner, customer, invoices):
    # Billed with one VAT id; the customer has a new one since: the CSV shows it as billed.
    invoices["open"].__class__.objects.filter(pk=invoices["open"].pk).update(
        bill_to_tax_id="DE136695976"
    )
    customer.tax_id = "DE811907980"
    customer.save()
    response = client_owner.get("/invoices/export.csv", {"status": "open", "per_page": "10"})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    data = read_csv(response)
    assert {r["number"] for r in data} == {invoices["open"].number, invoices["overdue"].number}
    row = next(r for r in data if r["number"] == invoices["open"].number)
    inv = invoices["open"]
    assert row["issue_date"] == inv.issue_date.isoformat()
    assert row["due_date"] == inv.due_date.isoformat()
    assert row["period_start"] == inv.period_start.isoformat()
    assert row["contract"] == inv.contract.reference
    assert (row["net"], row["tax"], row["total"]) == (
        str(inv.subtotal),
        str(inv.tax),
        str(inv.total),
    )
    assert (row["currency"], row["status"], row["paid_date"]) == ("EUR", "open", "")
    assert row["customer_vat_id"] == "DE136695976"


def test_csv_export_includes_paid_date_and_ignores_paging(client_owner, customer, invoices):
    data = read_csv(client_owner.get("/invoices/export.csv", {"page": "2", "per_page": "10"}))
    assert len(data) == 7
    paid = next(r for r in data if r["number"] == invoices["paid"].number)
    assert paid["paid_date"] == invoices["paid"].paid_at.date().isoformat()
    assert list(data[0]) == [
        "number",
        "issue_date",
        "due_date",
        "period_start",
        "period_end",
        "contract",
        "net",
        "tax",
        "total",
        "currency",
        "status",
        "paid_date",
        "customer_vat_id",
        "credited_invoice",
    ]


def test_csv_export_is_scoped_and_tolerates_bad_input(client_owner, invoices, other_customer):
    foreign = invoice_on(other_customer, datetime.date(2026, 6, 1))
    data = read_csv(client_owner.get("/invoices/export.csv", {"status": "nope", "sort": "x"}))
    assert foreign.number not in {r["number"] for r in data}
    assert len(data) == 7


def test_csv_requires_login(client):
    assert client.get("/invoices/export.csv").status_code == 302


def test_csv_shows_a_draft_with_the_customers_current_vat_id(client_owner, customer, invoices):
    customer.tax_id = "DE811907980"
    customer.save()
    (row,) = read_csv(client_owner.get("/invoices/export.csv", {"status": "draft"}))
    assert (row["number"], row["customer_vat_id"]) == ("", "DE811907980")
