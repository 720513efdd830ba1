"""The OpenAPI 3.1 document served at /api/schema/. Written by hand, checked by tests
(every response the suite sees is validated against it) and by schemathesis."""

from django.conf import settings

from .serializers import report_reasons

_ERROR_TYPES = [
    "invalid_request_error",
    "authentication_error",
    "card_error",
    "idempotency_error",
    "rate_limit_error",
    "api_error",
]


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


ADDRESS = {
    "type": "object",
    "properties": {
        k: _nullable({"type": "string"})
        for k in ("city", "country", "line1", "line2", "postal_code", "state")
    },
    "required": ["city", "country", "line1", "line2", "postal_code", "state"],
}
CUSTOMER = {
    "type": "object",
    "required": ["id", "object", "created", "address", "delinquent", "email", "name", "phone"],
    "properties": {
        "id": {"type": "string", "example": "cus_12"},
        "object": {"const": "customer"},
        "created": {"type": "integer"},
        "address": ADDRESS,
        "delinquent": {"type": "boolean"},
        "email": _nullable({"type": "string"}),
        "name": {"type": "string"},
        "phone": _nullable({"type": "string"}),
    },
}
PRICE = {
    "type": "object",
    "required": [
        "id",
        "object",
        "created",
        "active",
        "currency",
        "unit_amount_decimal",
        "recurring",
    ],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "price"},
        "created": {"type": "integer"},
        "active": {"type": "boolean"},
        "currency": {"type": "string", "pattern": "^[a-z]{3}$"},
        "unit_amount_decimal": {"type": "string", "example": "35000"},
        "recurring": {
            "type": "object",
            "required": ["interval", "interval_count", "usage_type"],
            "properties": {
                "interval": {"enum": ["day", "week", "month", "year"]},
                "interval_count": {"type": "integer", "minimum": 1},
                "usage_type": {"enum": ["licensed"]},
            },
        },
    },
}
SUBSCRIPTION = {
    "type": "object",
    "required": [
        "id",
        "object",
        "created",
        "currency",
        "customer",
        "status",
        "start_date",
        "current_period_start",
        "current_period_end",
        "cancel_at",
        "ended_at",
        "days_until_due",
        "items",
        "metadata",
    ],
    "properties": {
        "id": {"type": "string", "example": "sub_3"},
        "object": {"const": "subscription"},
        "created": {"type": "integer"},
        "currency": {"type": "string", "pattern": "^[a-z]{3}$"},
        "customer": {"anyOf": [{"type": "string"}, CUSTOMER]},
        "status": {"enum": ["active", "past_due", "canceled"]},
        "start_date": {"type": "integer"},
        "current_period_start": {"type": "integer"},
        "current_period_end": {"type": "integer"},
        "cancel_at": _nullable({"type": "integer"}),
        "ended_at": _nullable({"type": "integer"}),
        "days_until_due": {"type": "integer"},
        "metadata": {"type": "object"},
        "items": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "id",
                            "object",
                            "created",
                            "price",
                            "quantity",
                            "subscription",
                        ],
                        "properties": {
                            "id": {"type": "string"},
                            "object": {"const": "subscription_item"},
                            "created": {"type": "integer"},
                            "price": PRICE,
                            "quantity": {"type": "integer"},
                            "subscription": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}
_MONEY = {"type": "integer", "minimum": 0, "description": "Minor units (cents)."}
INVOICE = {
    "type": "object",
    "required": [
        "id",
        "object",
        "number",
        "created",
        "account_name",
        "amount_due",
        "amount_paid",
        "amount_remaining",
        "amount_refunded",
        "subtotal",
        "tax",
        "total",
        "currency",
        "billing_reason",
        "customer",
        "due_date",
        "invoice_pdf",
        "invoice_xml",
        "paid",
        "paid_out_of_band",
        "period_start",
        "period_end",
        "status",
        "subscription",
    ],
    "properties": {
        "id": {"type": "string", "example": "in_42"},
        "object": {"const": "invoice"},
        "number": _nullable({"type": "string", "example": "INV-2026-000123"}),
        "created": {"type": "integer", "description": "Unix seconds."},
        "account_name": {"type": "string"},
        "amount_due": _MONEY,
        "amount_paid": _MONEY,
        "amount_remaining": _MONEY,
        "amount_refunded": {**_MONEY, "description": "Returned by refunds or lost disputes."},
        "subtotal": _MONEY,
        "tax": _MONEY,
        "total": _MONEY,
        "currency": {"type": "string", "pattern": "^[a-z]{3}$", "example": "eur"},
        "billing_reason": {"enum": ["subscription_create", "subscription_cycle", "manual"]},
        "customer": {"anyOf": [{"type": "string", "example": "cus_12"}, CUSTOMER]},
        "due_date": _nullable({"type": "integer"}),
        "invoice_pdf": _nullable({"type": "string", "format": "uri"}),
        "invoice_xml": _nullable(
            {
                "type": "string",
                "format": "uri",
                "description": "The XRechnung (EN 16931, CII) e-invoice; null for drafts "
                "and void invoices.",
            }
        ),
        "paid": {"type": "boolean"},
        "paid_out_of_band": {"type": "boolean"},
        "period_start": {"type": "integer"},
        "period_end": {"type": "integer", "description": "Exclusive end of the period."},
        "status": {"enum": ["draft", "open", "paid", "uncollectible", "void"]},
        "portal_status": {"enum": ["draft", "open", "paid", "refund", "uncollectible", "void"]},
        "subscription": _nullable(
            {"anyOf": [{"type": "string", "example": "sub_3"}, SUBSCRIPTION]}
        ),
    },
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message", "param"],
            "properties": {
                "type": {"enum": _ERROR_TYPES},
                "code": _nullable({"type": "string"}),
                "message": {"type": "string"},
                "param": _nullable({"type": "string"}),
            },
        }
    },
}
INVOICE_EXAMPLE = {
    "id": "in_42",
    "object": "invoice",
    "number": "INV-2026-000123",
    "created": 1780000000,
    "account_name": "IPv4 Lease Networks GmbH",
    "amount_due": 83300,
    "amount_paid": 0,
    "amount_remaining": 83300,
    "amount_refunded": 0,
    "subtotal": 70000,
    "tax": 13300,
    "total": 83300,
    "currency": "eur",
    "billing_reason": "subscription_cycle",
    "customer": "cus_12",
    "due_date": 1781209600,
    "invoice_pdf": "https://portal.example.com/invoices/INV-2026-000123/pdf/",
    "invoice_xml": "https://portal.example.com/invoices/INV-2026-000123/xml/",
    "paid": False,
    "paid_out_of_band": False,
    "period_start": 1780000000,
    "period_end": 1782592000,
    "status": "open",
    "portal_status": "open",
    "subscription": "sub_3",
}


def _error_response(description: str, example_type: str, code: str) -> dict:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": {
                    "error": {
                        "type": example_type,
                        "code": code,
                        "message": description,
                        "param": None,
                    }
                },
            }
        },
    }


_AUTH_ERRORS = {
    "401": _error_response(
        "Missing, invalid, expired or revoked token.", "authentication_error", "invalid_token"
    ),
    "403": _error_response(
        "The token lacks the required scope.", "invalid_request_error", "missing_scope"
    ),
    "404": _error_response(
        "No such invoice (or another customer's).", "invalid_request_error", "resource_missing"
    ),
    "429": _error_response("Rate limited; see Retry-After.", "rate_limit_error", "rate_limit"),
    "400": _error_response("Invalid parameters.", "invalid_request_error", "parameter_invalid"),
}
_EXPAND_PARAM = {
    "name": "expand[]",
    "in": "query",
    "required": False,
    "schema": {
        "type": "array",
        "items": {"enum": ["customer", "subscription", "subscription.customer"]},
    },
    "style": "form",
    "explode": True,
}
_INVOICE_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "example": "in_42"},
}
_INVOICE_RESPONSE = {
    "description": "The invoice.",
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/Invoice"},
            "example": INVOICE_EXAMPLE,
        }
    },
}


REPORT_STATUSES = ["open", "under_review", "rejected", "corrected"]


def _invoice_report_schema() -> dict:
    return {
        "type": "object",
        "required": [
            "id",
            "object",
            "invoice",
            "reason",
            "description",
            "expected_correction",
            "status",
            "staff_message",
            "created",
            "resolved",
        ],
        "properties": {
            "id": {"type": "string", "example": "ir_7"},
            "object": {"const": "invoice_report"},
            "invoice": {"type": "string", "example": "in_42"},
            "reason": {"enum": report_reasons()},
            "description": {"type": "string"},
            "expected_correction": _nullable({"type": "string"}),
            "status": {"enum": REPORT_STATUSES},
            "staff_message": _nullable({"type": "string"}),
            "created": {"type": "integer"},
            "resolved": _nullable({"type": "integer"}),
        },
    }


def _report_path() -> dict:
    return {
        "post": {
            "operationId": "reportInvoice",
            "summary": "Report a problem with an invoice (dispute).",
            "description": (
                "The invoice is under review until staff answer: no automatic charge, "
                "reminder or cancellation happens for it meanwhile (it can still be paid). "
                "One open report per invoice; a paid invoice can be reported for "
                "DISPUTE_WINDOW_DAYS after it was paid. Send an `Idempotency-Key` header to "
                "retry safely."
            ),
            "x-scope": "invoices:dispute",
            "parameters": [
                _INVOICE_ID,
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["reason", "description"],
                            "properties": {
                                "reason": {"enum": report_reasons()},
                                "description": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": 4000,
                                    "pattern": "\\S",
                                },
                                "expected_correction": {"type": "string", "maxLength": 2000},
                            },
                        },
                        "example": {
                            "reason": "wrong_amount",
                            "description": "Block 192.0.2.0/24 is billed twice.",
                            "expected_correction": "One line for 192.0.2.0/24.",
                        },
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "The report; the invoice is under review.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/InvoiceReport"}
                        }
                    },
                },
                **_AUTH_ERRORS,
                "409": _error_response(
                    "The invoice is already under review, or cannot be reported (draft, "
                    "void, or paid longer ago than the dispute window).",
                    "invalid_request_error",
                    "invoice_under_review",
                ),
            },
        }
    }


def openapi_document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "IPv4 lease billing API",
            "version": "1.0.0",
            "description": (
                "Read and pay invoices. Authenticate with `Authorization: Bearer <token>`; "
                "create tokens at /settings/tokens/ with the scopes read:invoices, "
                "pay:invoices:pay and invoices:dispute. Amounts are integers in minor units; "
                "times are Unix seconds."
            ),
        },
        "servers": [{"url": settings.SITE_URL}],
        "security": [{"bearerToken": []}],
        "paths": {
            "/api/invoices/": {
                "get": {
                    "operationId": "listInvoices",
                    "summary": "List invoices, newest first (cursor pagination).",
                    "x-scope": "read:invoices",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 100,
                                "default": 10,
                            },
                        },
                        {
                            "name": "starting_after",
                            "in": "query",
                            "schema": {"type": "string", "pattern": "^in_[0-9]{1,17}$"},
                        },
                        {
                            "name": "ending_before",
                            "in": "query",
                            "schema": {"type": "string", "pattern": "^in_[0-9]{1,17}$"},
                        },
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"enum": ["draft", "open", "paid", "uncollectible", "void"]},
                        },
                        {
                            "name": "created[gte]",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 32503680000},
                        },
                        {
                            "name": "created[lte]",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 32503680000},
                        },
                        _EXPAND_PARAM,
                    ],
                    "responses": {
                        "200": {
                            "description": "A page of invoices.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["object", "url", "has_more", "data"],
                                        "properties": {
                                            "object": {"const": "list"},
                                            "url": {"type": "string"},
                                            "has_more": {"type": "boolean"},
                                            "data": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Invoice"},
                                            },
                                        },
                                    },
                                    "example": {
                                        "object": "list",
                                        "url": "/api/invoices/",
                                        "has_more": False,
                                        "data": [INVOICE_EXAMPLE],
                                    },
                                }
                            },
                        },
                        **{k: v for k, v in _AUTH_ERRORS.items() if k != "404"},
                    },
                }
            },
            "/api/invoices/{id}": {
                "get": {
                    "operationId": "getInvoice",
                    "summary": "Retrieve one invoice.",
                    "x-scope": "read:invoices",
                    "parameters": [_INVOICE_ID, _EXPAND_PARAM],
                    "responses": {"200": _INVOICE_RESPONSE, **_AUTH_ERRORS},
                }
            },
            "/api/invoices/{id}/pay": {
                "post": {
                    "operationId": "payInvoice",
                    "summary": "Pay an open invoice with a saved payment method.",
                    "description": (
                        "Charges `amount_remaining` to the given payment method of the invoice's "
                        "customer. Send an `Idempotency-Key` header to retry safely: the same key "
                        "and body replay the first answer for 24 hours without charging again."
                    ),
                    "x-scope": "pay:invoices:pay",
                    "parameters": [
                        _INVOICE_ID,
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["payment_method"],
                                    "properties": {
                                        "payment_method": {
                                            "type": "string",
                                            "minLength": 1,
                                            "description": "A saved method's id.",
                                        },
                                        "off_session": {"type": "boolean", "default": False},
                                        "expand": {
                                            "type": "array",
                                            "items": {
                                                "enum": [
                                                    "customer",
                                                    "subscription",
                                                    "subscription.customer",
                                                ]
                                            },
                                        },
                                    },
                                },
                                "example": {
                                    "payment_method": "pm_1QxYz",
                                    "off_session": False,
                                    "expand": ["customer"],
                                },
                            }
                        },
                    },
                    "responses": {
                        "200": _INVOICE_RESPONSE,
                        **_AUTH_ERRORS,
                        "402": _error_response(
                            "The card was declined; the invoice stays open.",
                            "card_error",
                            "card_declined",
                        ),
                        "409": _error_response(
                            "The invoice is not payable (paid, void, draft).",
                            "invalid_request_error",
                            "invoice_already_paid",
                        ),
                        "503": _error_response(
                            "The payment provider is unavailable; retry later.",
                            "api_error",
                            "provider_unavailable",
                        ),
                    },
                }
            },
            "/api/invoices/{id}/report": _report_path(),
        },
        "components": {
            "securitySchemes": {"bearerToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Invoice": INVOICE,
                "Customer": CUSTOMER,
                "Subscription": SUBSCRIPTION,
                "Error": ERROR,
                "InvoiceReport": _invoice_report_schema(),
            },
        },
    }
