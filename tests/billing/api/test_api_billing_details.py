"""GET/POST /api/billing_details: the customer's billing details through contracts'
service, with the billing_details scopes."""

import json

import pytest
from jsonschema_rs import Draft202012Validator

from billing.api.models import ApiScope
from billing.api.views import openapi_document
from contracts.models import Customer, Role
from core.models import AuditEntry
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(customer):
    return MembershipFactory(customer=customer, role=Role.BILLING)


@pytest.fixture
def schema():
    doc = openapi_document()
    body = doc["components"]["schemas"]["BillingDetails"]
    return Draft202012Validator({**body, "components": doc["components"]})


@pytest.fixture
def writer(member, make_token):
    return make_token(member, scopes=[ApiScope.WRITE_BILLING_DETAILS])[1]


def _post(api, token, body):
    return api(
        "post",
        "/api/billing_details",
        token,
        data=json.dumps(body),
        content_type="application/json",
    )


def test_read_shows_the_details_invoices_use(api, customer, member, make_token, schema):
    Customer.objects.filter(pk=customer.pk).update(
        billing_cc_emails=["ap@example.com"], buyer_reference="991-01234-56"
    )
    _, reader = make_token(member, scopes=[ApiScope.READ_BILLING_DETAILS])
    body = api("get", "/api/billing_details/", reader).json()
    schema.validate(body)
    assert body["id"] == f"cus_{customer.pk}" and body["object"] == "billing_details"
    assert body["billing_cc_emails"] == ["ap@example.com"]
    assert body["buyer_reference"] == "991-01234-56"
    assert body["name"] == customer.name and body["country"] == customer.country
    assert {"purchase_order_reference", "document_language", "tax_id"} <= set(body)


def test_update_goes_through_the_service_and_is_on_record(api, customer, member, writer, schema):
    response = _post(
        api,
        writer,
        {"purchase_order_reference": "PO-17", "billing_cc_emails": ["ap@example.com"]},
    )
    assert response.status_code == 200, response.content
    schema.validate(response.json())
    customer.refresh_from_db()
    assert customer.purchase_order_reference == "PO-17"
    assert customer.billing_cc_emails == ["ap@example.com"]
    entry = AuditEntry.objects.get(action="customer.details_changed", customer=customer)
    assert entry.actor == member.user
    assert entry.after == {
        "purchase_order_reference": "PO-17",
        "billing_cc_emails": ["ap@example.com"],
    }


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"email": "not-an-address"}, "email", "parameter_invalid"),
        ({"billing_cc_emails": ["x@"]}, "billing_cc_emails", "parameter_invalid"),
        ({"document_language": "fr"}, "document_language", "parameter_invalid"),
        ({"country": "DE", "tax_id": "DE123"}, "tax_id", "parameter_invalid"),
        ({"name": 5}, "name", "parameter_invalid"),
        ({"name": "A\x00B"}, "name", "parameter_invalid"),
        ({"phone": "+49 1"}, "phone", "parameter_unknown"),
        ({"is_business": False}, "is_business", "parameter_unknown"),
    ],
)
def test_bad_details_are_400_and_change_nothing(
    api, customer, writer, assert_error_schema, body, param, code
):
    before = {f: getattr(customer, f) for f in ("email", "tax_id", "name", "phone", "is_business")}
    error = assert_error_schema(_post(api, writer, body), 400, code)
    assert error["param"] == param
    customer.refresh_from_db()
    assert {f: getattr(customer, f) for f in before} == before
    assert not AuditEntry.objects.filter(action="customer.details_changed").exists()


def test_scopes_are_enforced(api, member, make_token, assert_error_schema):
    _, invoices_only = make_token(member, scopes=[ApiScope.READ_INVOICES, ApiScope.PAY_INVOICES])
    assert_error_schema(api("get", "/api/billing_details", invoices_only), 403, "missing_scope")
    _, reader = make_token(member, scopes=[ApiScope.READ_BILLING_DETAILS])
    assert_error_schema(_post(api, reader, {"city": "Berlin"}), 403, "missing_scope")
    assert_error_schema(api("get", "/api/billing_details"), 401, "missing_token")


def test_null_and_overlong_values_are_400_not_500(api, customer, writer, assert_error_schema):
    assert_error_schema(_post(api, writer, {"city": None}), 400, "parameter_invalid")
    error = assert_error_schema(_post(api, writer, {"city": "x" * 101}), 400, "parameter_invalid")
    assert error["param"] == "city" and "100" in error["message"]
    error = assert_error_schema(
        _post(api, writer, {"billing_cc_emails": ["a" * 250 + "@example.com"]}), 400
    )
    assert error["param"] == "billing_cc_emails"
