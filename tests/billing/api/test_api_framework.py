"""The API on django-ninja: the generated document, the docs page without a CDN, and
ninja's own answers (422, bare 405, text 404) never leaving the API."""

import json
import re

import pytest
from django.contrib.staticfiles import finders

from billing.api.views import openapi_document
from contracts.models import Role
from tests.factories import MembershipFactory, make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(customer, make_token):
    return make_token(MembershipFactory(customer=customer, role=Role.BILLING))[1]


def test_the_served_document_is_the_generated_one(client):
    served = client.get("/api/schema/").json()
    assert served == json.loads(json.dumps(openapi_document()))
    assert client.get("/api/schema").json() == served
    schemas = served["components"]["schemas"]
    assert {"Invoice", "InvoiceList", "InvoiceReport", "Error", "PayRequest"} <= set(schemas)
    for path, operations in served["paths"].items():
        for method, operation in operations.items():
            assert operation["security"], (method, path)
            assert "Error" in str(operation["responses"]["401"]), (method, path)
            if method == "post":
                example = operation["requestBody"]["content"]["application/json"]["example"]
                assert example, path


def test_docs_page_uses_the_packaged_assets_and_no_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/ninja/swagger-ui-bundle.js" in assets
    assert "/static/ninja/swagger-ui.css" in assets
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    assert "cdn" not in html.lower()
    assert '"url": "/api/schema/"' in html
    for asset in ("ninja/swagger-ui-bundle.js", "ninja/swagger-ui.css", "ninja/swagger-ui-init.js"):
        assert finders.find(asset), asset


def test_wrong_methods_answer_the_envelope_with_allow(api, customer, token, assert_error_schema):
    invoice = make_invoice(customer=customer)
    response = api("get", f"/api/invoices/in_{invoice.pk}/pay", token)
    assert_error_schema(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"
    response = api("post", "/api/schema/")
    assert_error_schema(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


def test_pydantic_errors_never_leave_as_ninja_422(api, customer, token, assert_error_schema):
    invoice = make_invoice(customer=customer)
    for body in ('{"payment_method": ["pm"]}', '{"payment_method": "pm", "expand": [1]}'):
        response = api(
            "post",
            f"/api/invoices/in_{invoice.pk}/pay/",
            token,
            data=body,
            content_type="application/json",
        )
        error = assert_error_schema(response, 400, "parameter_invalid")
        assert "detail" not in response.json()
        assert error["param"] in ("payment_method", "expand")


def test_trailing_slash_spellings_reach_the_same_operation(api, customer, token):
    invoice = make_invoice(customer=customer)
    for path in ("/api/invoices", "/api/invoices/"):
        assert api("get", path, token).json()["data"][0]["id"] == f"in_{invoice.pk}"
    for path in (f"/api/invoices/in_{invoice.pk}", f"/api/invoices/in_{invoice.pk}/"):
        assert api("get", path, token).json()["id"] == f"in_{invoice.pk}"


def test_an_unexpected_error_is_a_500_envelope(api, customer, token, monkeypatch):
    from billing.api import views

    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(views, "invoice_object", boom)
    invoice = make_invoice(customer=customer)
    response = api("get", f"/api/invoices/in_{invoice.pk}", token)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "api_error"


def test_successes_and_errors_share_one_content_type(api, customer, token):
    make_invoice(customer=customer)
    ok = api("get", "/api/invoices/", token)
    error = api("get", "/api/invoices/?limit=0", token)
    assert ok["Content-Type"] == error["Content-Type"] == "application/json"
