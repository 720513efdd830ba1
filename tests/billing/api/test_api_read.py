import datetime
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone
from jsonschema_rs import Draft202012Validator

from billing.api.models import ApiScope, ApiToken
from billing.api.views import openapi_document
from billing.invoices import services
from billing.invoices.credit_notes import CreditLine, credit_note_issue
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payment_services
from contracts.models import Role
from tests.factories import MembershipFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def membership(customer):
    return MembershipFactory(customer=customer, role=Role.BILLING)


@pytest.fixture
def token(membership, make_token):
    return make_token(membership)[1]


def test_missing_malformed_and_unknown_tokens_are_401_json(api, assert_error_schema):
    assert_error_schema(api("get", "/api/invoices/"), 401, "missing_token")
    assert_error_schema(
        api("get", "/api/invoices/", headers={"Authorization": "Basic abc"}), 401, "missing_token"
    )
    response = api("get", "/api/invoices/", "ipl_not-a-real-token")
    assert_error_schema(response, 401, "invalid_token")
    assert "Bearer" in response["WWW-Authenticate"]


def test_expired_and_revoked_tokens_are_401(api, membership, make_token, assert_error_schema):
    expiring, raw = make_token(membership, expires_at=None)
    ApiToken.objects.filter(pk=expiring.pk).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert "expired" in assert_error_schema(api("get", "/api/invoices/", raw), 401)["message"]
    revoked, raw = make_token(membership)
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    assert "revoked" in assert_error_schema(api("get", "/api/invoices/", raw), 401)["message"]


def test_a_removed_member_token_stops_working(api, membership, token, assert_error_schema):
    membership.delete()
    assert_error_schema(api("get", "/api/invoices/", token), 401, "invalid_token")


def test_scope_is_enforced(api, membership, make_token, assert_error_schema):
    _, pay_only = make_token(membership, scopes=[ApiScope.PAY_INVOICES])
    assert_error_schema(api("get", "/api/invoices/", pay_only), 403, "missing_scope")
    _, read_only = make_token(membership, scopes=[ApiScope.READ_INVOICES])
    invoice = make_invoice(customer=membership.customer)
    response = api(
        "post",
        f"/api/invoices/in_{invoice.pk}/pay",
        read_only,
        data={"payment_method": "pm_x"},
        content_type="application/json",
    )
    assert_error_schema(response, 403, "missing_scope")


def test_detail_matches_the_seed_shape(api, customer, token, assert_invoice_schema):
    invoice = make_invoice(customer=customer, blocks=2, price="350.00")
    body = assert_invoice_schema(api("get", f"/api/invoices/in_{invoice.pk}", token).json())
    assert body["object"] == "invoice"
    assert body["number"] == invoice.number
    assert body["total"] == 83300 and body["subtotal"] == 70000 and body["tax"] == 13300
    assert (
        body["amount_due"] == 83300
        and body["amount_remaining"] == 83300
        and body["amount_paid"] == 0
    )
    assert body["currency"] == "eur"
    assert body["status"] == "open" and body["paid"] is False
    assert body["customer"] == f"cus_{customer.pk}"
    assert body["subscription"] == f"sub_{invoice.contract_id}"
    assert body["invoice_pdf"] == f"http://testserver/invoices/{invoice.number}/pdf/"
    assert body["invoice_xml"] == f"http://testserver/invoices/{invoice.number}/xml/"
    assert body["due_date"] == int(
        datetime.datetime.combine(
            invoice.due_date, datetime.time(), tzinfo=datetime.UTC
        ).timestamp()
    )
    # Trailing slash is optional.
    assert api("get", f"/api/invoices/in_{invoice.pk}/", token).json()["id"] == body["id"]


def test_expand_customer_and_subscription(
    api, customer, token, assert_invoice_schema, django_assert_max_num_queries
):
    invoice = make_invoice(
        customer=customer, blocks=3, price="100", started_on=timezone.localdate()
    )
    url = f"/api/invoices/in_{invoice.pk}?expand[]=customer&expand[]=subscription.customer"
    # session-less: token, invoice (+contract), blocks, open invoices, delinquent, last use
    with django_assert_max_num_queries(7):
        response = api("get", url, token)
    body = assert_invoice_schema(response.json())
    assert body["customer"]["name"] == customer.name and body["customer"]["delinquent"] is False
    assert body["customer"]["address"]["country"] == "DE"
    sub = body["subscription"]
    assert sub["status"] == "active" and sub["customer"]["id"] == f"cus_{customer.pk}"
    item = sub["items"]["data"][0]
    assert item["quantity"] == 3
    assert item["price"]["unit_amount_decimal"] == "10000"
    assert item["price"]["recurring"]["interval"] == "month"
    assert sub["days_until_due"] == 14


def test_refund_is_visible_without_breaking_the_enum(api, customer, token, assert_invoice_schema):
    invoice = make_invoice(customer=customer)
    payment_services.invoice_record_out_of_band_payment(invoice_id=invoice.pk, actor="t")
    payment = invoice.payments.get()
    payment_services.payment_record_refund(
        payment_id=payment.pk, amount=payment.amount, provider_refund_id="re_1", actor="t"
    )
    body = assert_invoice_schema(api("get", f"/api/invoices/in_{invoice.pk}", token).json())
    assert body["status"] == "paid" and body["portal_status"] == "refund"
    assert body["amount_refunded"] == body["amount_paid"] == body["total"]


def test_other_customers_invoice_is_404_like_a_missing_one(
    api, token, other_customer, assert_error_schema
):
    foreign = make_invoice(customer=other_customer)
    a = assert_error_schema(
        api("get", f"/api/invoices/in_{foreign.pk}", token), 404, "resource_missing"
    )
    b = assert_error_schema(api("get", "/api/invoices/in_99999999", token), 404, "resource_missing")
    assert a["type"] == b["type"]
    assert_error_schema(api("get", "/api/invoices/garbage", token), 404, "resource_missing")


def test_list_paginates_by_cursor_and_filters(
    api, customer, token, other_customer, assert_invoice_schema, django_assert_max_num_queries
):
    contract = make_contract(customer, started_on=datetime.date(2026, 1, 1))
    services.billing_run(today=datetime.date(2026, 5, 1))
    make_invoice(customer=other_customer)
    ids = list(contract.invoices.order_by("-pk").values_list("pk", flat=True))
    assert len(ids) == 5
    with django_assert_max_num_queries(6):
        page1 = api("get", "/api/invoices/?limit=2&expand[]=customer", token).json()
    assert [d["id"] for d in page1["data"]] == [f"in_{i}" for i in ids[:2]] and page1["has_more"]
    for row in page1["data"]:
        assert_invoice_schema(row)
    page2 = api(
        "get", f"/api/invoices/?limit=2&starting_after={page1['data'][-1]['id']}", token
    ).json()
    assert [d["id"] for d in page2["data"]] == [f"in_{i}" for i in ids[2:4]]
    page3 = api(
        "get", f"/api/invoices/?limit=2&starting_after={page2['data'][-1]['id']}", token
    ).json()
    assert [d["id"] for d in page3["data"]] == [f"in_{ids[4]}"] and not page3["has_more"]
    back = api("get", f"/api/invoices/?limit=2&ending_before=in_{ids[4]}", token).json()
    assert [d["id"] for d in back["data"]] == [f"in_{i}" for i in ids[2:4]]

    services.invoice_void(invoice_id=ids[0], actor="t")
    void = api("get", "/api/invoices/?status=void", token).json()["data"]
    assert [d["id"] for d in void] == [f"in_{ids[0]}"]


def test_list_query_count_does_not_grow_with_rows(
    api, customer, token, django_assert_max_num_queries
):
    contract = make_contract(customer, blocks=2, started_on=datetime.date(2025, 1, 1))
    services.billing_run(today=datetime.date(2026, 6, 1))
    with django_assert_max_num_queries(8):
        body = api(
            "get",
            "/api/invoices/?limit=100&expand[]=subscription.customer&expand[]=customer",
            token,
        ).json()
    assert len(body["data"]) == contract.invoices.count() == 18


def test_created_filters(api, customer, token):
    with time_machine.travel(datetime.datetime(2026, 1, 10, tzinfo=datetime.UTC)):
        old = make_invoice(customer=customer)
    with time_machine.travel(datetime.datetime(2026, 3, 10, tzinfo=datetime.UTC)):
        new = make_invoice(customer=customer)
    cut = int(datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC).timestamp())
    after = api("get", f"/api/invoices/?created[gte]={cut}", token).json()["data"]
    before = api("get", f"/api/invoices/?created[lte]={cut}", token).json()["data"]
    assert [d["id"] for d in after] == [f"in_{new.pk}"]
    assert [d["id"] for d in before] == [f"in_{old.pk}"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("status=refund", "status"),
        ("created[gte]=yesterday", "created[gte]"),
        ("created[gte]=99999999999999999", "created[gte]"),
        ("starting_after=42", "starting_after"),
        ("expand[]=invoice_pdf", "expand"),
        ("colour=blue", "colour"),
    ],
)
def test_bad_list_parameters_are_400_with_the_param(api, token, query, param, assert_error_schema):
    assert assert_error_schema(api("get", f"/api/invoices/?{query}", token), 400)["param"] == param


def test_unknown_api_urls_and_methods_answer_json(api, token, assert_error_schema):
    assert_error_schema(api("get", "/api/nothing-here", token), 404, "resource_missing")
    response = api("delete", "/api/invoices/", token)
    assert_error_schema(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


def test_rate_limit_per_token_with_retry_after(
    api, settings, membership, make_token, assert_error_schema
):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    _, first = make_token(membership)
    _, second = make_token(membership)
    with time_machine.travel(
        datetime.datetime(2026, 1, 1, 12, 0, 10, tzinfo=datetime.UTC), tick=False
    ):
        for _ in range(3):
            assert api("get", "/api/invoices/", first).status_code == 200
        limited = api("get", "/api/invoices/", first)
        assert_error_schema(limited, 429, "rate_limit")
        assert int(limited["Retry-After"]) == 50
        assert api("get", "/api/invoices/", second).status_code == 200, "limits are per token"
    with time_machine.travel(
        datetime.datetime(2026, 1, 1, 12, 1, 1, tzinfo=datetime.UTC), tick=False
    ):
        assert api("get", "/api/invoices/", first).status_code == 200


def test_last_use_is_recorded(api, membership, make_token):
    token, raw = make_token(membership)
    assert token.last_used_at is None
    api("get", "/api/invoices/", raw)
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_schema_is_public_json_and_describes_every_route(client):
    doc = client.get("/api/schema/").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/invoices/",
        "/api/invoices/{id}",
        "/api/invoices/{id}/pay",
        "/api/credit_notes/",
        "/api/credit_notes/{id}",
        "/api/payment_methods/",
        "/api/statement",
        "/api/invoices/{id}/report",
        "/api/billing_details",
        "/api/activity",
        "/api/webhook_endpoints",
    }
    pay = doc["paths"]["/api/invoices/{id}/pay"]["post"]
    assert {"200", "400", "401", "402", "403", "404", "409", "429", "503"} <= set(pay["responses"])
    assert pay["requestBody"]["content"]["application/json"]["example"]["payment_method"]


def test_open_overdue_invoice_makes_the_customer_delinquent(api, customer, token):
    invoice = make_invoice(customer=customer, started_on=datetime.date(2026, 1, 1))
    assert invoice.status == InvoiceStatus.OPEN
    body = api(
        "get", f"/api/invoices/in_{invoice.pk}?expand[]=customer&expand[]=subscription", token
    ).json()
    assert body["customer"]["delinquent"] is True
    assert body["subscription"]["cancel_at"] is not None


def test_a_token_stops_working_when_its_owner_becomes_a_viewer(api, membership, token):
    assert api("get", "/api/invoices/", token).status_code == 200
    membership.role = Role.VIEWER
    membership.save()
    assert api("get", "/api/invoices/", token).status_code == 401


def test_the_delinquent_flag_is_looked_up_only_for_an_expanded_customer(api, customer, token):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    invoice = make_invoice(customer=customer)

    def delinquency_queries(path: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api("get", path, token).status_code == 200
        return sum('"invoices_invoice"."due_date" <' in q["sql"] for q in ctx.captured_queries)

    assert delinquency_queries(f"/api/invoices/in_{invoice.pk}") == 0
    assert delinquency_queries(f"/api/invoices/in_{invoice.pk}?expand[]=customer") == 1


def test_credit_notes_in_stripes_shape_with_the_invoice_amounts(
    api, customer, token, assert_invoice_schema, other_customer, assert_error_schema
):
    doc = openapi_document()
    validator = Draft202012Validator(
        {**doc["components"]["schemas"]["CreditNote"], "components": doc["components"]}
    )
    invoice = make_invoice(customer=customer)
    (line,) = invoice.lines.all()
    note = credit_note_issue(
        invoice_id=invoice.pk,
        lines=[CreditLine(line.pk, Decimal("20.00"))],
        reason="wrong period",
        settle="credit",
        actor="s",
    )
    body = api("get", f"/api/credit_notes/cn_{note.pk}", token).json()
    validator.validate(body)
    assert body["number"] == note.number and body["invoice"] == f"in_{invoice.pk}"
    assert (body["subtotal"], body["total"], body["pre_payment_amount"]) == (2000, 2380, 2380)
    assert body["type"] == "pre_payment" and body["memo"] == "wrong period"
    assert body["total_taxes"][0]["amount"] == 380
    assert body["lines"]["data"][0]["invoice_line_item"] == f"il_{line.pk}"
    assert body["credit_note_xml"] == f"http://testserver/credit-notes/{note.number}/xml/"
    inv = assert_invoice_schema(api("get", f"/api/invoices/in_{invoice.pk}", token).json())
    assert inv["pre_payment_credit_notes_amount"] == 2380
    assert inv["post_payment_credit_notes_amount"] == 0
    assert inv["amount_due"] == 11900 - 2380 and inv["amount_remaining"] == 11900 - 2380
    listed = api("get", f"/api/credit_notes?invoice=in_{invoice.pk}", token).json()
    assert [n["id"] for n in listed["data"]] == [f"cn_{note.pk}"]
    for row in listed["data"]:
        validator.validate(row)
    theirs = credit_note_issue(
        invoice_id=make_invoice(customer=other_customer).pk,
        amount=Decimal("1.00"),
        reason="r",
        settle="credit",
        actor="s",
    )
    assert_error_schema(
        api("get", f"/api/credit_notes/cn_{theirs.pk}", token), 404, "resource_missing"
    )
    assert api("get", "/api/credit_notes", token).json()["data"] == [body]
    assert_error_schema(api("get", "/api/credit_notes?invoice=x", token), 400)
    assert_error_schema(api("get", "/api/credit_notes?limit=0", token), 400)
