"""GET /api/activity: the activity page's sentences, scoped, filtered and paginated."""

import datetime

import pytest
import time_machine

from billing.api.models import ApiScope
from billing.invoices import services as invoice_services
from contracts.models import Role
from core.activity import customer_activity, describe
from core.audit import audit_record
from tests.factories import MembershipFactory, make_invoice

from .conftest import _validator

pytestmark = pytest.mark.django_db

MARCH = datetime.datetime(2026, 3, 2, 9, tzinfo=datetime.UTC)
MAY = datetime.datetime(2026, 5, 4, 9, tzinfo=datetime.UTC)


@pytest.fixture
def member(customer):
    return MembershipFactory(customer=customer, role=Role.BILLING)


@pytest.fixture
def reader(member, make_token):
    return make_token(member, scopes=[ApiScope.READ_ACTIVITY])[1]


@pytest.fixture
def listing(api, reader):
    validator = _validator("ActivityList")

    def call(token=None, **params):
        response = api("get", "/api/activity", token or reader, data=params)
        if response.status_code == 200:
            validator.validate(response.json())
        return response

    return call


def test_the_sentences_of_the_activity_page_never_staff_notes(listing, customer, other_customer):
    invoice = make_invoice(customer=customer)
    invoice_services.invoice_void(
        invoice_id=invoice.pk, actor="staff", reason="STAFF-ONLY customer is difficult"
    )
    audit_record(
        actor="staff", action="invoice.note", target=invoice, customer=customer, note="INTERNAL"
    )
    foreign = make_invoice(customer=other_customer)
    response = listing(limit=100)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    texts = [row["text"] for row in body["data"]]
    page = [item.text for item in describe(customer_activity(customer.pk))]
    assert sorted(texts) == sorted(page)
    assert f"Invoice {invoice.number} voided: it is not to be paid" in texts
    joined = " ".join(texts)
    assert "STAFF-ONLY" not in joined and "INTERNAL" not in joined
    assert foreign.number not in response.content.decode()
    assert {row["kind"] for row in body["data"]} <= {"invoices", "contracts", "account"}
    assert all(row["id"].startswith("act_") and row["object"] == "activity" for row in body["data"])


def test_the_scope_is_needed(api, member, make_token, assert_error_schema):
    raw = make_token(member, scopes=[ApiScope.READ_INVOICES])[1]
    assert_error_schema(api("get", "/api/activity", raw), 403, "missing_scope")
    assert_error_schema(api("get", "/api/activity"), 401, "missing_token")


def test_pages_forwards_and_backwards_in_flat_queries(
    listing, customer, django_assert_max_num_queries
):
    for _ in range(4):
        make_invoice(customer=customer)
    everything = [row["id"] for row in listing(limit=100).json()["data"]]
    assert len(everything) >= 8
    seen, after = [], None
    while True:
        params = {"limit": 3, **({"starting_after": after} if after else {})}
        with django_assert_max_num_queries(12):
            body = listing(**params).json()
        seen += [row["id"] for row in body["data"]]
        if not body["has_more"]:
            break
        after = body["data"][-1]["id"]
    assert seen == everything  # every line once, newest first
    back = listing(limit=2, ending_before=everything[4]).json()
    assert [row["id"] for row in back["data"]] == everything[2:4] and back["has_more"]
    with django_assert_max_num_queries(12):
        listing(limit=100)


def test_filters_by_kind_and_dates(listing, customer):
    with time_machine.travel(MARCH):
        march = make_invoice(customer=customer)
    with time_machine.travel(MAY):
        may = make_invoice(customer=customer)
    contracts = listing(kind="contracts", limit=100).json()["data"]
    assert contracts and all(row["kind"] == "contracts" for row in contracts)
    in_march = " ".join(r["text"] for r in listing(date_to="2026-03-31", limit=100).json()["data"])
    assert march.number in in_march and may.number not in in_march
    in_may = listing(date_from="2026-05-01", date_to="2026-05-31", limit=100).json()["data"]
    assert may.number in " ".join(r["text"] for r in in_may)
    assert march.number not in " ".join(r["text"] for r in in_may)


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"kind": "secrets"}, "kind", "parameter_invalid"),
        ({"date_from": "2026-13-01"}, "date_from", "parameter_invalid"),
        ({"date_from": "2026-05-02", "date_to": "2026-05-01"}, "date_from", "parameter_invalid"),
        ({"limit": 0}, "limit", "parameter_invalid"),
        ({"starting_after": "in_4"}, "starting_after", "parameter_invalid"),
        ({"page": 2}, "page", "parameter_unknown"),
    ],
)
def test_bad_parameters_are_named(listing, assert_error_schema, params, param, code):
    error = assert_error_schema(listing(**params), 400, code)
    assert error["param"] == param


def test_the_api_answers_in_english_whatever_the_browser_asks(api, reader, customer, client):
    """The pages follow the person's language; the JSON API stays English for programs."""
    invoice = make_invoice(customer=customer)
    client.cookies["django_language"] = "de"
    response = api(
        "get", "/api/activity", reader, data={"limit": 100}, headers={"accept-language": "de"}
    )
    rows = response.json()["data"]
    assert any(r["text"].startswith(f"Invoice {invoice.number} issued for €") for r in rows)
    assert {r["kind_label"] for r in rows} <= {
        "Invoices",
        "Contracts and blocks",
        "Account and security",
    }
    assert not any("Rechnung" in r["text"] for r in rows)
