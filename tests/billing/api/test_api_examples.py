"""Every documented response of every operation carries an example, and each example is a
valid body of that response (validated against the generated schema)."""

import json

from jsonschema_rs import Draft202012Validator

from billing.api.views import openapi_document

METHODS = {"get", "post", "put", "patch", "delete"}


def _responses(doc):
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            assert operation.get("responses"), f"{method} {path} documents no response"
            for status, response in operation["responses"].items():
                yield f"{method.upper()} {path} {status}", response


def test_every_response_of_every_operation_has_an_example():
    doc = openapi_document()
    missing = []
    count = 0
    for name, response in _responses(doc):
        content = response.get("content") or {}
        if not content:
            missing.append(f"{name} (no body documented)")
        for media_type, media in content.items():
            count += 1
            if "example" not in media and not media.get("examples"):
                missing.append(f"{name} {media_type}")
    assert count > 40
    assert not missing, f"responses without an example: {missing}"


def test_every_example_is_a_valid_body_of_its_response():
    doc = openapi_document()
    for name, response in _responses(doc):
        for media in response.get("content", {}).values():
            validator = Draft202012Validator({**media["schema"], "components": doc["components"]})
            example = media.get("example")
            errors = [e.message for e in validator.iter_errors(example)]
            assert not errors, (name, errors)


def test_error_examples_match_their_status():
    doc = json.loads(json.dumps(openapi_document()))  # as served: status codes are strings
    op = doc["paths"]["/api/invoices/{id}/pay"]["post"]["responses"]
    body = op["402"]["content"]["application/json"]["example"]
    assert body["error"]["type"] == "card_error"
    assert op["429"]["content"]["application/json"]["example"]["error"]["code"] == "rate_limit"
    listed = doc["paths"]["/api/invoices/"]["get"]["responses"]["200"]
    assert listed["content"]["application/json"]["example"]["data"][0]["object"] == "invoice"
