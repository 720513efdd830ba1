import pytest
from jsonschema_rs import Draft202012Validator

from billing.api.views import openapi_document


def _validator(name: str) -> Draft202012Validator:
    # The document ninja generates from the code, the one /api/schema/ serves.
    doc = openapi_document()
    schema = {**doc["components"]["schemas"][name], "components": doc["components"]}
    # $refs in the document point at #/components/...; resolve them against the same root.
    return Draft202012Validator(schema)


@pytest.fixture
def assert_invoice_schema():
    validator = _validator("Invoice")

    def check(body: dict) -> dict:
        validator.validate(body)
        return body

    return check


@pytest.fixture
def assert_error_schema():
    validator = _validator("Error")

    def check(response, status: int, code: str | None = None) -> dict:
        assert response.status_code == status, response.content
        assert response["Content-Type"] == "application/json"
        body = response.json()
        validator.validate(body)
        if code is not None:
            assert body["error"]["code"] == code, body
        return body["error"]

    return check


@pytest.fixture
def api(client):
    def call(method: str, path: str, raw: str | None = None, **kw):
        headers = kw.pop("headers", {})
        if raw:
            headers["Authorization"] = f"Bearer {raw}"
        return getattr(client, method)(path, headers=headers, **kw)

    return call
