"""GET /api/payment_methods, and paying with a saved bank account through the API: every
answer checked against the generated document."""

import json

import pytest

from billing.api.models import ApiScope
from billing.api.views import openapi_document
from billing.payments import services as payments
from billing.payments import tasks
from billing.payments.models import PaymentMethod, PaymentStatus
from billing.payments.providers import sandbox
from contracts.models import Role
from tests.billing.api.conftest import _validator
from tests.factories import MembershipFactory, PaymentMethodFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


@pytest.fixture
def membership(customer):
    return MembershipFactory(customer=customer, role=Role.BILLING)


@pytest.fixture
def reader(membership, make_token):
    return make_token(membership, scopes=[ApiScope.READ_PAYMENT_METHODS, ApiScope.PAY_INVOICES])[1]


@pytest.fixture
def assert_list_schema():
    validator = _validator("PaymentMethodList")

    def check(response) -> dict:
        assert response.status_code == 200, response.content
        body = response.json()
        validator.validate(body)
        return body

    return check


def _iban(customer, iban="DE89370400440532013000") -> PaymentMethod:
    payments.provider_event_apply(
        sandbox.attach_iban_event(customer.pk, sandbox.iban_for(iban)), actor="test"
    )
    return PaymentMethod.objects.filter(customer=customer, last4=iban[-4:]).latest("pk")


def test_lists_cards_and_bank_accounts_with_mandates_and_contracts(
    api, customer, membership, reader, assert_list_schema
):
    card = PaymentMethodFactory(customer=customer, last4="4242", is_default=True)
    iban = _iban(customer)
    contract = make_contract(customer)
    payments.contract_payment_method_set(
        customer_id=customer.pk, contract_id=contract.pk, method_id=iban.pk, actor="t"
    )
    PaymentMethodFactory(last4="4242")  # another customer's
    body = assert_list_schema(api("get", "/api/payment_methods", reader))
    assert body["object"] == "list" and body["has_more"] is False
    first, second = body["data"]
    assert first == {
        "id": card.provider_id,
        "object": "payment_method",
        "type": "card",
        "created": int(card.created_at.timestamp()),
        "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034},
        "bank": None,
        "default": True,
        "contracts": [],
    }
    assert second["id"] == iban.provider_id and second["type"] == "sepa_debit"
    assert second["card"] is None and second["default"] is False
    assert second["bank"]["bank_name"] == "Commerzbank" and second["bank"]["last4"] == "3000"
    mandate = second["bank"]["mandate"]
    assert mandate["reference"] == iban.mandate_reference
    assert mandate["accepted_at"] == int(iban.mandate_accepted_at.timestamp())
    assert "debit your account" in mandate["text"]
    assert second["contracts"] == [{"id": f"sub_{contract.pk}", "reference": contract.reference}]
    # The trailing-slash spelling, and the type filter.
    only = assert_list_schema(api("get", "/api/payment_methods/?type=sepa_debit", reader))
    assert [m["id"] for m in only["data"]] == [iban.provider_id]


def test_pagination_by_cursor_and_flat_queries(
    api, customer, reader, assert_list_schema, django_assert_max_num_queries
):
    methods = [PaymentMethodFactory(customer=customer, is_default=False) for _ in range(5)]
    newest_first = [m.provider_id for m in reversed(methods)]
    with django_assert_max_num_queries(10):
        page = assert_list_schema(api("get", "/api/payment_methods?limit=2", reader))
    assert [m["id"] for m in page["data"]] == newest_first[:2] and page["has_more"] is True
    after = page["data"][-1]["id"]
    page = assert_list_schema(
        api("get", f"/api/payment_methods?limit=2&starting_after={after}", reader)
    )
    assert [m["id"] for m in page["data"]] == newest_first[2:4] and page["has_more"] is True
    page = assert_list_schema(
        api("get", f"/api/payment_methods?limit=2&ending_before={newest_first[4]}", reader)
    )
    assert [m["id"] for m in page["data"]] == newest_first[2:4]


def test_bad_queries_scope_and_other_customers(
    api, membership, make_token, reader, assert_error_schema
):
    stranger = PaymentMethodFactory(last4="4242")
    assert_error_schema(api("get", "/api/payment_methods"), 401, "missing_token")
    invoices_only = make_token(membership, scopes=[ApiScope.READ_INVOICES])[1]
    assert_error_schema(api("get", "/api/payment_methods", invoices_only), 403, "missing_scope")
    for query, param in (
        ("limit=0", "limit"),
        ("type=paypal", "type"),
        ("starting_after=pm%20x", "starting_after"),
        ("colour=red", "colour"),
    ):
        error = assert_error_schema(api("get", f"/api/payment_methods?{query}", reader), 400)
        assert error["param"] == param, (query, error)
    # Another customer's method is missing here, like an unknown one.
    missing = api("get", f"/api/payment_methods?starting_after={stranger.provider_id}", reader)
    error = assert_error_schema(missing, 404, "resource_missing")
    assert error["param"] == "starting_after"


def test_the_scope_is_offered_on_the_tokens_page_and_documented(client, membership):
    client.force_login(membership.user)
    page = client.get("/settings/tokens/").content.decode()
    assert "payment_methods:read" in page
    doc = openapi_document()
    assert "/api/payment_methods/" in doc["paths"]
    assert "payment_methods:read" in doc["info"]["description"]


def test_paying_with_a_saved_iban_answers_the_invoice_processing(
    api, customer, reader, assert_invoice_schema, monkeypatch
):
    queued = []
    monkeypatch.setattr(
        tasks.sandbox_settle_debit,
        "apply_async",
        lambda args, countdown=None: queued.append(tuple(args)),
    )
    invoice = make_invoice(customer=customer)
    iban = _iban(customer)
    listed = api("get", "/api/payment_methods?type=sepa_debit", reader).json()["data"]
    response = api(
        "post",
        f"/api/invoices/in_{invoice.pk}/pay",
        reader,
        data=json.dumps({"payment_method": listed[0]["id"]}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    body = assert_invoice_schema(response.json())
    assert body["status"] == "open" and body["payment_processing"] is True
    assert body["amount_paid"] == 0
    assert invoice.payments.get().status == PaymentStatus.PROCESSING
    assert iban.provider_id == listed[0]["id"]

    (args,) = queued
    tasks.sandbox_settle_debit(*args)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
