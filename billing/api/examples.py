"""Examples for every documented response of the generated OpenAPI document.

ninja documents each response by its schema only; `with_examples` adds, to each response
of each operation, an example of its body: the object examples below (written as the API
answers, one customer's invoice throughout), the error envelope by status code, and for any
other schema one built from the schema itself. tests/billing/api/test_api_examples.py
checks that every response has one and that each validates against its schema.
"""

import copy
from typing import Any

SITE = "https://portal.example.com"

INVOICE: dict[str, Any] = {
    "id": "in_42",
    "object": "invoice",
    "number": "INV-2026-000123",
    "created": 1772409600,
    "account_name": "IPv4 Lease GmbH",
    "amount_due": 83300,
    "amount_paid": 0,
    "amount_remaining": 83300,
    "amount_refunded": 0,
    "pre_payment_credit_notes_amount": 0,
    "post_payment_credit_notes_amount": 0,
    "starting_balance": 0,
    "subtotal": 70000,
    "tax": 13300,
    "total": 83300,
    "currency": "eur",
    "billing_reason": "subscription_cycle",
    "customer": "cus_12",
    "due_date": 1773619200,
    "invoice_pdf": f"{SITE}/invoices/INV-2026-000123/pdf/",
    "invoice_xml": f"{SITE}/invoices/INV-2026-000123/xml/",
    "paid": False,
    "paid_out_of_band": False,
    "payment_processing": False,
    "period_start": 1772323200,
    "period_end": 1775001600,
    "status": "open",
    "portal_status": "open",
    "subscription": "sub_3",
}

SUBSCRIPTION: dict[str, Any] = {
    "id": "sub_3",
    "object": "subscription",
    "created": 1767225600,
    "currency": "eur",
    "customer": "cus_12",
    "status": "past_due",
    "start_date": 1767225600,
    "current_period_start": 1772323200,
    "current_period_end": 1775001600,
    "cancel_at": 1774224000,
    "ended_at": None,
    "days_until_due": 14,
    "metadata": {"contract": "C-000003"},
    "items": {
        "object": "list",
        "data": [
            {
                "id": "si_3",
                "object": "subscription_item",
                "created": 1767225600,
                "quantity": 2,
                "subscription": "sub_3",
                "price": {
                    "id": "price_3",
                    "object": "price",
                    "created": 1767225600,
                    "active": True,
                    "currency": "eur",
                    "unit_amount_decimal": "35000",
                    "recurring": {
                        "interval": "month",
                        "interval_count": 1,
                        "usage_type": "licensed",
                    },
                },
            }
        ],
    },
}

CREDIT_NOTE: dict[str, Any] = {
    "id": "cn_7",
    "object": "credit_note",
    "number": "CN-2026-000001",
    "created": 1772841600,
    "effective_at": 1772841600,
    "currency": "eur",
    "customer": "cus_12",
    "invoice": "in_42",
    "invoice_number": "INV-2026-000123",
    "amount": 11900,
    "subtotal": 10000,
    "subtotal_excluding_tax": 10000,
    "total": 11900,
    "total_excluding_tax": 10000,
    "pre_payment_amount": 11900,
    "post_payment_amount": 0,
    "out_of_band_amount": None,
    "credit_amount": 0,
    "refund_amount": 0,
    "memo": "Block 192.0.2.0/24 was not announced for the first days.",
    "reason": None,
    "status": "issued",
    "type": "pre_payment",
    "voided_at": None,
    "pdf": f"{SITE}/credit-notes/CN-2026-000001/pdf/",
    "credit_note_xml": f"{SITE}/credit-notes/CN-2026-000001/xml/",
    "total_taxes": [
        {
            "amount": 1900,
            "taxable_amount": 10000,
            "tax_behavior": "exclusive",
            "taxability_reason": None,
            "note": None,
            "tax_rate_details": {"display_name": "VAT", "percentage": "19.00"},
        }
    ],
    "refunds": [],
    "lines": {
        "object": "list",
        "has_more": False,
        "url": "/api/credit_notes/cn_7",
        "data": [
            {
                "id": "cnli_9",
                "object": "credit_note_line_item",
                "type": "custom_line_item",
                "invoice_line_item": None,
                "description": "Goodwill credit",
                "amount": 10000,
                "quantity": 1,
                "unit_amount": 10000,
                "tax_rate_percentage": "19.00",
            }
        ],
    },
}

INVOICE_REPORT = {
    "id": "ir_7",
    "object": "invoice_report",
    "invoice": "in_42",
    "reason": "wrong_tax",
    "description": "Reverse charge missing.",
    "expected_correction": None,
    "status": "open",
    "staff_message": None,
    "created": 1772841600,
    "resolved": None,
}

BILLING_DETAILS = {
    "id": "cus_12",
    "object": "billing_details",
    "name": "Demo Networks GmbH",
    "email": "billing@demo-networks.example",
    "billing_cc_emails": ["ap@demo-networks.example"],
    "address_line1": "Hauptstraße 1",
    "address_line2": "",
    "postal_code": "10115",
    "city": "Berlin",
    "state": "",
    "country": "DE",
    "tax_id": "DE811907980",
    "purchase_order_reference": "PO-2026-17",
    "buyer_reference": "",
    "document_language": "en",
}

STATEMENT = {
    "object": "statement",
    "customer": "cus_12",
    "currency": "eur",
    "period_start": "2026-01-01",
    "period_end": "2026-03-31",
    "opening_balance": 0,
    "closing_balance": 71400,
    "credit_balance": 0,
    "lines": [
        {
            "date": "2026-03-01",
            "type": "invoice",
            "reference": "INV-2026-000123",
            "description": "Invoice",
            "amount": 83300,
            "balance": 83300,
        },
        {
            "date": "2026-03-07",
            "type": "credit_note",
            "reference": "CN-2026-000001",
            "description": "Credit note for INV-2026-000123",
            "amount": -11900,
            "balance": 71400,
        },
    ],
    "aging": {
        "as_of": "2026-03-31",
        "current": 71400,
        "1_30": 0,
        "31_60": 0,
        "61_90": 0,
        "over_90": 0,
    },
}

ACTIVITY = {
    "id": "act_981",
    "object": "activity",
    "created": 1772409600,
    "kind": "invoices",
    "kind_label": "Invoices",
    "text": "Invoice INV-2026-000123 issued for 833.00 EUR, due 2026-03-16",
}


WEBHOOK_ENDPOINT = {
    "id": "we_5",
    "object": "webhook_endpoint",
    "url": "https://erp.example.com/hooks/portal",
    "description": "ERP",
    "enabled_events": ["invoice.finalized", "invoice.paid"],
    "status": "enabled",
    "disabled_reason": None,
    "created": 1772409600,
}


def _list(url: str, item: dict) -> dict:
    return {"object": "list", "url": url, "has_more": False, "data": [item]}


# By component name (the pydantic class of the response).
EXAMPLES: dict[str, Any] = {
    "Invoice": INVOICE,
    "InvoiceList": _list("/api/invoices/", INVOICE),
    "Subscription": SUBSCRIPTION,
    "CreditNote": CREDIT_NOTE,
    "CreditNoteList": _list("/api/credit_notes", CREDIT_NOTE),
    "InvoiceReport": INVOICE_REPORT,
    "BillingDetails": BILLING_DETAILS,
    "Statement": STATEMENT,
    "Activity": ACTIVITY,
    "ActivityList": _list("/api/activity", ACTIVITY),
    "WebhookEndpoint": WEBHOOK_ENDPOINT,
    "WebhookEndpointList": _list("/api/webhook_endpoints", WEBHOOK_ENDPOINT),
}


def _error(type_: str, code: str | None, message: str, param: str | None = None) -> dict:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


ERRORS: dict[str, dict] = {
    "400": _error(
        "invalid_request_error", "parameter_invalid", "limit must be between 1 and 100.", "limit"
    ),
    "401": _error(
        "authentication_error",
        "missing_token",
        "Send your API token as 'Authorization: Bearer <token>'.",
    ),
    "402": _error("card_error", "card_declined", "Your card was declined."),
    "403": _error(
        "invalid_request_error", "missing_scope", "This token lacks the scope 'read:invoices'."
    ),
    "404": _error("invalid_request_error", "resource_missing", "No such invoice: 'in_999'."),
    "409": _error("invalid_request_error", "invoice_already_paid", "This invoice is already paid."),
    "413": _error("invalid_request_error", "request_too_large", "The request body is too large."),
    "429": _error("rate_limit_error", "rate_limit", "Too many requests for this token; slow down."),
    "503": _error(
        "api_error", "provider_unavailable", "The payment provider did not answer; try again."
    ),
}


def _resolve(schema: dict, components: dict) -> dict:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        return components[ref.rsplit("/", 1)[1]]
    return schema


def from_schema(schema: dict, components: dict, depth: int = 0) -> Any:
    """A value that fits `schema`, from its own examples, enums and types (a fallback for
    schemas without a written example)."""
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in EXAMPLES:
        return copy.deepcopy(EXAMPLES[ref.rsplit("/", 1)[1]])
    schema = _resolve(schema, components)
    if depth > 8:
        return None
    for key in ("examples",):
        if schema.get(key):
            return schema[key][0]
    if "example" in schema:
        return schema["example"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return from_schema(options[0], components, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {
            name: from_schema(sub, components, depth + 1)
            for name, sub in schema.get("properties", {}).items()
        }
    if kind == "array":
        return [from_schema(schema.get("items", {}), components, depth + 1)]
    if kind == "integer":
        return max(int(schema.get("minimum", 0)), 0)
    if kind == "number":
        return 0
    if kind == "boolean":
        return False
    if kind == "string":
        return {"date": "2026-03-31", "uri": f"{SITE}/", "date-time": "2026-03-31T12:00:00Z"}.get(
            schema.get("format", ""), "string"
        )
    return None


def with_examples(document: dict) -> dict:
    """The document with an example on every response body that has none."""
    components = document.get("components", {}).get("schemas", {})
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                for media in response.get("content", {}).values():
                    if "example" in media or "examples" in media:
                        continue
                    schema = media.get("schema", {})
                    if schema.get("$ref", "").endswith("/Error") and str(status) in ERRORS:
                        media["example"] = copy.deepcopy(ERRORS[str(status)])
                    else:
                        media["example"] = from_schema(schema, components)
    return document
