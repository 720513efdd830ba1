"""The JSON API on django-ninja: list and read invoices, pay one with a saved payment
method, report a problem with one.

Bearer tokens with scopes; every answer is JSON; errors use the Stripe-like envelope of
billing.api.errors, never ninja's default bodies (see the exception handlers below).
The OpenAPI document at /api/schema/ is generated from these operations and the pydantic
classes of billing.api.schemas. Views stay thin: payment goes through
billing.payments.services, the same service the invoice page uses.
"""

import datetime
import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import reverse
from django.utils import timezone, translation
from django.views.decorators.csrf import csrf_exempt
from ninja import Body, NinjaAPI, Query, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Swagger
from ninja.security import HttpBearer
from pydantic_core import PydanticCustomError

from billing.api.models import SCOPE_ALLOWS, ApiScope, ApiToken
from billing.invoices import signals as invoice_signals
from billing.invoices.models import (
    CreditNote,
    Invoice,
    InvoiceStatus,
    overdue_q,
    payment_processing_flag,
)
from billing.payments.models import PaymentMethod
from contracts.auth import FailureCounter, client_ip
from contracts.models import Customer
from contracts.services import BILLING_DETAIL_FIELDS, customer_update
from core import activity
from core.errors import DomainError

from . import idempotency
from .errors import ApiError, invalid, not_found
from .examples import with_examples
from .ratelimit import check_rate
from .schemas import ActivityList as ActivityListSchema
from .schemas import (
    ActivityListQuery,
    BillingDetails,
    BillingDetailsUpdate,
    CreditNoteListQuery,
    Error,
    ExpandQuery,
    InvoiceListQuery,
    InvoiceReport,
    PaymentMethodListQuery,
    PayRequest,
    ReportRequest,
    StatementQuery,
    WebhookEndpointListQuery,
    check_expand,
    parse_activity_api_id,
    parse_webhook_endpoint_api_id,
)
from .schemas import CreditNote as CreditNoteSchema
from .schemas import CreditNoteList as CreditNoteListSchema
from .schemas import Invoice as InvoiceSchema
from .schemas import InvoiceList as InvoiceListSchema
from .schemas import PaymentMethodList as PaymentMethodListSchema
from .schemas import Statement as StatementSchema
from .schemas import WebhookEndpointList as WebhookEndpointListSchema
from .serializers import (
    STATUS_FOR_API,
    credit_note_object,
    invoice_object,
    invoice_report_object,
    parse_credit_note_api_id,
    parse_invoice_api_id,
    payment_method_object,
    statement_object,
)
from .tokens import UNKNOWN_TOKEN, token_authenticate

logger = logging.getLogger(__name__)

NOT_PAYABLE = {
    InvoiceStatus.PAID: ("invoice_already_paid", "This invoice is already paid."),
    InvoiceStatus.REFUND: ("invoice_already_paid", "This invoice was paid and refunded."),
    InvoiceStatus.VOID: ("invoice_void", "This invoice is void; do not pay it."),
    InvoiceStatus.DRAFT: ("invoice_draft", "This invoice is a draft and cannot be paid yet."),
}
# Messages for pydantic's own type errors, per parameter, as the API worded them before
# it moved onto ninja.
TYPE_MESSAGES = {
    "limit": "limit must be an integer.",
    "created[gte]": "created[gte] must be an integer.",
    "created[lte]": "created[lte] must be an integer.",
    "payment_method": "payment_method must be a payment method id string.",
    "description": "description must be a string of text.",
    "expected_correction": "expected_correction must be a string of text.",
    "off_session": "off_session must be a boolean.",
    "expand": "expand must be an array of strings.",
    "expand[]": "expand must be an array of strings.",
}
BODY_INVALID = "The request body must be a JSON object."


class ScopedBearer(HttpBearer):
    """The bearer token, its scope and its rate; any refusal is an ApiError (the envelope).

    The whole check runs here rather than in HttpBearer.authenticate so that a missing
    header is our 401 with WWW-Authenticate, not ninja's bare AuthenticationError.
    """

    def __init__(self, scope: str, *also: str) -> None:
        super().__init__()
        self.scope, self.also = scope, also

    def __call__(self, request: HttpRequest) -> ApiToken:
        token = _authenticate(request)
        if not any(token.has_scope(s) for s in (self.scope, *self.also)):
            raise ApiError(
                403,
                f"This token lacks the scope {self.scope!r}.",
                type="invalid_request_error",
                code="missing_scope",
            )
        retry_after = check_rate(token.pk)
        if retry_after is not None:
            raise ApiError(
                429,
                "Too many requests for this token; slow down.",
                type="rate_limit_error",
                code="rate_limit",
                headers={"Retry-After": str(retry_after)},
            )
        request.api_token = token
        return token

    def authenticate(self, request: HttpRequest, token: str) -> None:  # pragma: no cover
        raise NotImplementedError("ScopedBearer.__call__ does the whole check")


class LocalSwagger(Swagger):
    """Swagger UI from ninja's packaged static files (ninja is an installed app, so its
    template without CDN links is the one used), pointed at our schema URL."""

    def get_openapi_url(self, api: NinjaAPI, path_params: dict) -> str:
        return reverse("api:schema").rstrip("/") + "/"


def _english(build: Callable[[], str]) -> str:
    with translation.override("en"):
        return build()


class BillingAPI(NinjaAPI):
    def get_content_type(self) -> str:
        # JSON is UTF-8 by definition (RFC 8259); the API has always answered plain
        # `application/json`, errors and successes alike, and clients compare it.
        return "application/json"


api = BillingAPI(
    title="IPv4 lease billing API",
    version="1.0.0",
    # Built in English whatever language is active while the URLs load: the JSON API and its
    # document are English (the scopes' explanations are lazy for the tokens page).
    description=_english(
        lambda: "Read and pay invoices, read credit notes and statements of account. Authenticate "
        "with `Authorization: Bearer <token>`; create "
        "tokens at /settings/tokens/ with the scopes "
        + "; ".join(f"`{scope}` ({what})" for scope, what in SCOPE_ALLOWS.items())
        + ". Amounts are integers in minor units; times are Unix seconds. Errors are "
        '`{"error": {"type", "code", "message", "param"}}`.'
    ),
    openapi_url="/schema/",
    docs_url="/docs/",
    docs=LocalSwagger(),
    urls_namespace="api",
)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return exc.response()


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """The first of pydantic's errors in the API's envelope, naming the parameter."""
    error = exc.errors[0]
    loc = [str(part) for part in error.get("loc", ())]
    kind = error.get("type", "")
    where = loc[0] if loc else ""
    # Query: ("query", name); body: ("body", "payload", name, ...); the body itself is
    # ("body", "payload").
    names = loc[1:] if where == "query" else loc[2:]
    param = names[0] if names else None
    if where == "body" and param is None:
        if kind == "missing" and request.resolver_match.url_name == "invoice-pay":
            # An empty body: the one required parameter is what is missing (as before).
            return invalid(
                "Missing required param: payment_method.",
                param="payment_method",
                code="parameter_missing",
            ).response()
        return invalid(BODY_INVALID, code="body_invalid").response()
    if kind == "extra_forbidden":
        return invalid(
            f"Received unknown parameter: {param}.", param=param, code="parameter_unknown"
        ).response()
    if kind == "missing":
        message = error["msg"] if error["msg"].startswith("Missing") else None
        return invalid(
            message or f"Missing required param: {param}.", param=param, code="parameter_missing"
        ).response()
    if param in ("expand[]",):
        param = "expand"
    if kind == "parameter_invalid":
        return invalid(error["msg"], param=param).response()
    message = TYPE_MESSAGES.get(names[0] if names else "", f"{param}: {error['msg']}.")
    return invalid(message, param=param).response()


@api.exception_handler(RequestDataTooBig)
def _too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    # config.middleware.RequestGuardMiddleware answers first when it is installed; this
    # keeps the answer a 413 without it.
    return ApiError(
        413,
        f"The request body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        code="request_too_large",
    ).response()


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400:  # ninja could not parse the body
        if isinstance(exc.__cause__, RecursionError):
            return invalid("The request body is nested too deeply.", code="body_invalid").response()
        return invalid(BODY_INVALID, code="body_invalid").response()
    return ApiError(exc.status_code, str(exc), code=None).response()


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return ApiError(
        401,
        "Send your API token as 'Authorization: Bearer <token>'.",
        type="authentication_error",
        code="missing_token",
        headers={"WWW-Authenticate": 'Bearer realm="api"'},
    ).response()


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("API error on %s", request.path, exc_info=exc)
    return ApiError(500, "Something went wrong on our side.", type="api_error").response()


def _errors(*statuses: int) -> dict:
    return {status: Error for status in statuses}


class NoQuery(Schema):
    pass


def _reject_unknown(request: HttpRequest, known: type) -> None:
    """Stripe answers an unknown query parameter with an error; so do we."""
    allowed = {f.alias or name for name, f in known.model_fields.items()} | set(known.model_fields)
    if "expand_list" in known.model_fields:
        allowed.add("expand")
    unknown = sorted(set(request.GET) - allowed)
    if unknown:
        raise invalid(
            f"Received unknown parameter: {unknown[0]}.", param=unknown[0], code="parameter_unknown"
        )


def _id_page(qs: QuerySet, after: int | None, before: int | None, limit: int) -> tuple[list, bool]:
    """One page of a list read newest first by id, Stripe's way: `after` and `before` are ids
    from a previous page (both together select the window between them, read from `after`).
    Returns the rows in newest-first order and whether more lie beyond them."""
    if after is not None:
        qs = qs.filter(pk__lt=after)
    if before is not None:
        qs = qs.filter(pk__gt=before)
    backwards = before is not None and after is None
    rows = list(qs.order_by("pk" if backwards else "-pk")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    return rows, has_more


def _query_expand(request: HttpRequest, listed: list[str]) -> set[str]:
    plain = request.GET.getlist("expand")
    try:
        check_expand(plain)
    except PydanticCustomError as exc:
        raise invalid(exc.message(), param="expand") from None
    return set(listed) | set(plain)


def _token_failures() -> FailureCounter:
    return FailureCounter(
        "api-token",
        limit=settings.API_TOKEN_FAILURE_LIMIT,
        window=settings.LOGIN_FAILURE_WINDOW,
        lockout=settings.LOGIN_LOCKOUT_SECONDS,
    )


def _locked(seconds: int) -> ApiError:
    return ApiError(
        429,
        "Too many invalid API tokens from your address; try again later.",
        type="rate_limit_error",
        code="too_many_invalid_tokens",
        headers={"Retry-After": str(seconds)},
    )


def _authenticate(request: HttpRequest) -> ApiToken:
    """The token of the request; an address that sends many unknown tokens is locked out.

    Only guesses count, and only guesses are refused by the lock: a missing header is a
    plain 401, a revoked or expired token is a known one (an integration to fix), and a
    valid token is served whatever its address did.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise ApiError(
            401,
            "Send your API token as 'Authorization: Bearer <token>'.",
            type="authentication_error",
            code="missing_token",
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )
    # The token first: a valid one works even from an address that is locked out (an
    # integration behind the same NAT as a guesser); only guesses meet the lock.
    token, why = token_authenticate(raw.strip())
    if token is None:
        failures = _token_failures()
        address = client_ip(request)
        left = failures.locked_for(address) if why == UNKNOWN_TOKEN else None
        if left is not None:
            raise _locked(left)
        started = failures.fail(address) if why == UNKNOWN_TOKEN else None
        if started is not None:
            raise _locked(started)
        raise ApiError(
            401,
            why,
            type="authentication_error",
            code="invalid_token",
            headers={"WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'},
        )
    return token


# Trailing slashes are optional: an API client should not get a redirect on POST. Each
# operation is routed twice; only the first spelling is in the document.


@api.get(
    "/invoices/",
    response={200: InvoiceListSchema, **_errors(400, 401, 403, 429)},
    auth=ScopedBearer(ApiScope.READ_INVOICES),
    summary="List invoices",
    description="Scope `read:invoices`. Newest first; `expand[]` works on every row.",
    tags=["invoices"],
    url_name="invoice-list",
)
@api.get(
    "/invoices",
    include_in_schema=False,
    url_name="invoice-list",
    auth=ScopedBearer(ApiScope.READ_INVOICES),
)
def invoice_list(request: HttpRequest, query: Query[InvoiceListQuery]) -> dict:
    token = request.api_token
    _reject_unknown(request, InvoiceListQuery)
    expand = _query_expand(request, query.expand_list)
    qs = _invoices(token, expand)
    if query.status is not None:
        qs = qs.filter(status__in=[s for s, api in STATUS_FOR_API.items() if api == query.status])
    for value, lookup in (
        (query.created_gte, "created_at__gte"),
        (query.created_lte, "created_at__lte"),
    ):
        if value is not None:
            qs = qs.filter(**{lookup: datetime.datetime.fromtimestamp(value, tz=datetime.UTC)})
    # Newest first by id, like Stripe; a cursor is an invoice id from a previous page.
    # Both cursors together select the window between them, read from starting_after.
    after = parse_invoice_api_id(query.starting_after) if query.starting_after else None
    before = parse_invoice_api_id(query.ending_before) if query.ending_before else None
    rows, has_more = _id_page(qs, after, before, query.limit)
    delinquent = _delinquent(token, expand)
    return {
        "object": "list",
        "url": "/api/invoices/",
        "has_more": has_more,
        "data": [invoice_object(i, expand=expand, delinquent=delinquent) for i in rows],
    }


@api.get(
    "/invoices/{id}",
    response={200: InvoiceSchema, **_errors(400, 401, 403, 404, 429)},
    auth=ScopedBearer(ApiScope.READ_INVOICES),
    summary="Read an invoice",
    description="Scope `read:invoices`. Another customer's invoice is 404 like a missing one.",
    tags=["invoices"],
    url_name="invoice-detail",
)
@api.get(
    "/invoices/{id}/",
    include_in_schema=False,
    url_name="invoice-detail",
    auth=ScopedBearer(ApiScope.READ_INVOICES),
)
def invoice_detail(request: HttpRequest, id: str, query: Query[ExpandQuery]) -> dict:
    token = request.api_token
    _reject_unknown(request, ExpandQuery)
    expand = _query_expand(request, query.expand_list)
    invoice = _get_invoice(token, id, expand)
    return invoice_object(invoice, expand=expand, delinquent=_delinquent(token, expand))


PAY_EXAMPLE = {"payment_method": "pm_card_visa", "off_session": False, "expand": ["customer"]}


# The optional header every POST that changes money or state accepts (documented once).
IDEMPOTENCY_KEY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


@api.post(
    "/invoices/{id}/pay",
    response={200: InvoiceSchema, **_errors(400, 401, 402, 403, 404, 409, 429, 503)},
    auth=ScopedBearer(ApiScope.PAY_INVOICES),
    summary="Pay invoice",
    description=(
        "Scope `pay:invoices:pay` (shared/seeds/002). Charges a payment method saved for "
        "the invoice's customer and answers the invoice. Send `Idempotency-Key` to retry "
        "safely: the first answer is replayed for 24 hours."
    ),
    tags=["invoices"],
    url_name="invoice-pay",
    openapi_extra={
        "requestBody": {"content": {"application/json": {"example": PAY_EXAMPLE}}},
        "parameters": [IDEMPOTENCY_KEY_HEADER],
    },
)
@api.post(
    "/invoices/{id}/pay/",
    include_in_schema=False,
    url_name="invoice-pay",
    auth=ScopedBearer(ApiScope.PAY_INVOICES),
)
def invoice_pay(request: HttpRequest, id: str, payload: Body[PayRequest]) -> HttpResponse:
    token = request.api_token
    body = payload.model_dump(exclude_unset=True)
    body.setdefault("off_session", False)
    body.setdefault("expand", [])
    return _keyed(
        request,
        token,
        body,
        lambda: _pay(token, id, body, set(body["expand"]), request.headers.get("Idempotency-Key")),
    )


@api.post(
    "/invoices/{id}/report",
    response={200: InvoiceReport, **_errors(400, 401, 403, 404, 409, 429, 503)},
    auth=ScopedBearer(ApiScope.DISPUTE_INVOICES),
    summary="Report a problem with an invoice",
    description=(
        "Scope `invoices:dispute`. The invoice is under review (no automatic charge, "
        "reminder or cancellation) until staff answer. The same Idempotency-Key replays "
        "the answer."
    ),
    tags=["invoices"],
    url_name="invoice-report",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "example": {
                        "reason": "wrong_tax",
                        "description": "Reverse charge missing.",
                    }
                }
            }
        },
        "parameters": [IDEMPOTENCY_KEY_HEADER],
    },
)
@api.post(
    "/invoices/{id}/report/",
    include_in_schema=False,
    url_name="invoice-report",
    auth=ScopedBearer(ApiScope.DISPUTE_INVOICES),
)
def invoice_report(request: HttpRequest, id: str, payload: Body[ReportRequest]) -> HttpResponse:
    token = request.api_token
    body = payload.model_dump()
    return _keyed(request, token, body, lambda: _report(token, id, body))


BILLING_DETAILS_SCOPES = (ApiScope.READ_BILLING_DETAILS, ApiScope.WRITE_BILLING_DETAILS)


@api.get(
    "/billing_details",
    response={200: BillingDetails, **_errors(401, 403, 429)},
    auth=ScopedBearer(*BILLING_DETAILS_SCOPES),
    summary="Read billing details",
    description="Scope `billing_details:read` or `billing_details:write`.",
    tags=["billing details"],
    url_name="billing-details",
)
@api.get(
    "/billing_details/",
    include_in_schema=False,
    auth=ScopedBearer(*BILLING_DETAILS_SCOPES),
    url_name="billing-details",
)
def billing_details(request: HttpRequest) -> dict:
    _reject_unknown(request, NoQuery)
    return billing_details_object(Customer.objects.get(pk=request.api_token.customer_id))


@api.post(
    "/billing_details",
    response={200: BillingDetails, **_errors(400, 401, 403, 429)},
    auth=ScopedBearer(ApiScope.WRITE_BILLING_DETAILS),
    summary="Change billing details",
    description=(
        "Scope `billing_details:write`. Send only what changes; the details are validated "
        "as on the billing details page (tax id for the country, e-mail addresses) and the "
        "change is on the customer's record. Issued invoices keep the details they had."
    ),
    tags=["billing details"],
    url_name="billing-details-update",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "example": {
                        "purchase_order_reference": "PO-2026-17",
                        "billing_cc_emails": ["ap@example.com"],
                    }
                }
            }
        }
    },
)
@api.post(
    "/billing_details/",
    include_in_schema=False,
    auth=ScopedBearer(ApiScope.WRITE_BILLING_DETAILS),
    url_name="billing-details-update",
)
def billing_details_update(request: HttpRequest, payload: Body[BillingDetailsUpdate]) -> dict:
    token = request.api_token
    changes = payload.model_dump(exclude_unset=True)
    try:
        customer = customer_update(customer_id=token.customer_id, changes=changes, actor=token.user)
    except DjangoValidationError as exc:
        errors = exc.message_dict
        param = next(iter(errors))
        raise invalid(errors[param][0], param=param) from None
    except DomainError as exc:
        raise invalid(exc.message) from None
    return billing_details_object(customer)


# --- Saved payment methods --------------------------------------------------------------


@api.get(
    "/payment_methods/",
    response={200: PaymentMethodListSchema, **_errors(400, 401, 403, 404, 429)},
    auth=ScopedBearer(ApiScope.READ_PAYMENT_METHODS),
    summary="List saved payment methods",
    description=(
        "Scope `payment_methods:read`. The customer's saved cards and bank accounts (SEPA "
        "Direct Debit, ACH) with their mandates, the default, and the contracts that name "
        "each one. An `id` here is what `POST /api/invoices/{id}/pay` takes as "
        "`payment_method`; paying with a bank account answers the invoice with "
        "`payment_processing: true`. Default first, then newest; `type` narrows the list."
    ),
    tags=["payment methods"],
    url_name="payment-method-list",
)
@api.get(
    "/payment_methods",
    include_in_schema=False,
    url_name="payment-method-list",
    auth=ScopedBearer(ApiScope.READ_PAYMENT_METHODS),
)
def payment_method_list(request: HttpRequest, query: Query[PaymentMethodListQuery]) -> dict:
    from billing.payments.selectors import methods_with_contracts

    _reject_unknown(request, PaymentMethodListQuery)
    qs = methods_with_contracts(request.api_token.customer_id, provider=settings.PAYMENT_PROVIDER)
    if query.type is not None:
        qs = qs.filter(type=query.type)
    # The page order (default first, then newest) as one sortable key; a cursor is a
    # method id of this customer, looked up to its place in that order.
    ordered = list(qs.order_by("-is_default", "-created_at", "-pk"))
    ids = [m.provider_id for m in ordered]
    start, end = 0, len(ordered)
    cursors = (("starting_after", query.starting_after), ("ending_before", query.ending_before))
    for name, cursor in cursors:
        if cursor is not None and cursor not in ids:
            # Like a missing object (Stripe's resource_missing): the id is well-formed.
            raise ApiError(
                404,
                f"No such payment method: {cursor!r}.",
                code="resource_missing",
                param=name,
            )
    if query.starting_after is not None:
        start = ids.index(query.starting_after) + 1
    if query.ending_before is not None:
        end = ids.index(query.ending_before)
    window = ordered[start:end]
    backwards = query.ending_before is not None and query.starting_after is None
    rows = window[-query.limit :] if backwards else window[: query.limit]
    has_more = len(window) > query.limit
    return {
        "object": "list",
        "url": "/api/payment_methods",
        "has_more": has_more,
        "data": [payment_method_object(m) for m in rows],
    }


# --- Credit notes and the statement of account -----------------------------------------


def _credit_notes(token: ApiToken) -> QuerySet[CreditNote]:
    return (
        CreditNote.objects.filter(customer_id=token.customer_id)
        .select_related("invoice")
        .prefetch_related("lines", "tax_lines", "refunds")
    )


@api.get(
    "/credit_notes/",
    response={200: CreditNoteListSchema, **_errors(400, 401, 403, 429)},
    auth=ScopedBearer(ApiScope.READ_INVOICES),
    summary="List credit notes",
    description="Scope `read:invoices`. Newest first; `invoice` narrows to one invoice's.",
    tags=["credit notes"],
    url_name="credit-note-list",
)
@api.get(
    "/credit_notes",
    include_in_schema=False,
    url_name="credit-note-list",
    auth=ScopedBearer(ApiScope.READ_INVOICES),
)
def credit_note_list(request: HttpRequest, query: Query[CreditNoteListQuery]) -> dict:
    _reject_unknown(request, CreditNoteListQuery)
    qs = _credit_notes(request.api_token)
    if query.invoice is not None:
        qs = qs.filter(invoice_id=parse_invoice_api_id(query.invoice))
    after = parse_credit_note_api_id(query.starting_after) if query.starting_after else None
    before = parse_credit_note_api_id(query.ending_before) if query.ending_before else None
    rows, has_more = _id_page(qs, after, before, query.limit)
    return {
        "object": "list",
        "url": "/api/credit_notes",
        "has_more": has_more,
        "data": [credit_note_object(note) for note in rows],
    }


@api.get(
    "/credit_notes/{id}",
    response={200: CreditNoteSchema, **_errors(400, 401, 403, 404, 429)},
    auth=ScopedBearer(ApiScope.READ_INVOICES),
    summary="Read a credit note",
    description="Scope `read:invoices`. Another customer's credit note is 404 like a missing one.",
    tags=["credit notes"],
    url_name="credit-note-detail",
)
@api.get(
    "/credit_notes/{id}/",
    include_in_schema=False,
    url_name="credit-note-detail",
    auth=ScopedBearer(ApiScope.READ_INVOICES),
)
def credit_note_detail(request: HttpRequest, id: str) -> dict:
    _reject_unknown(request, NoQuery)
    pk = parse_credit_note_api_id(id)
    note = _credit_notes(request.api_token).filter(pk=pk).first() if pk else None
    if note is None:
        raise not_found(f"No such credit note: {id!r}.")
    return credit_note_object(note)


@api.get(
    "/statement",
    response={200: StatementSchema, **_errors(400, 401, 403, 429)},
    auth=ScopedBearer(ApiScope.READ_INVOICES),
    summary="Statement of account",
    description=(
        "Scope `read:invoices`. For a currency and period (both dates inclusive): the "
        "opening balance, every invoice, credit note, payment and refund with the running "
        "balance, the closing balance and the aging of what is open. A period that ends "
        "before it starts, or spans more than three years, is a 400."
    ),
    tags=["statements"],
    url_name="statement",
    by_alias=True,
)
@api.get(
    "/statement/",
    include_in_schema=False,
    url_name="statement",
    auth=ScopedBearer(ApiScope.READ_INVOICES),
    by_alias=True,
)
def statement(request: HttpRequest, query: Query[StatementQuery]) -> dict:
    from billing.payments.statements import statement_build

    _reject_unknown(request, StatementQuery)
    dates = {}
    for name in ("start", "end"):
        value = getattr(query, name)
        try:
            dates[name] = None if value is None else datetime.date.fromisoformat(value)
        except ValueError:
            raise invalid(f"{name} must be a date such as 2026-01-31.", param=name) from None
    token = request.api_token
    try:
        result = statement_build(customer=token.customer, currency=query.currency, **dates)
    except DomainError as exc:
        param = {"period": "end", "currency": "currency"}.get(exc.code)
        raise invalid(exc.message, param=param) from None
    return statement_object(result)


@api.get(
    "/activity",
    response={200: ActivityListSchema, **_errors(400, 401, 403, 429)},
    auth=ScopedBearer(ApiScope.READ_ACTIVITY),
    summary="List the account's activity",
    description=(
        "Scope `activity:read`. What /account/activity/ shows, newest first: one plain "
        "sentence per change (invoices, payments, contracts, account, e-mails sent), never "
        "staff's notes. `kind` narrows to one group; `date_from`/`date_to` (inclusive, "
        "YYYY-MM-DD) to a period."
    ),
    tags=["activity"],
    url_name="activity",
)
@api.get(
    "/activity/",
    include_in_schema=False,
    url_name="activity",
    auth=ScopedBearer(ApiScope.READ_ACTIVITY),
)
def activity_list(request: HttpRequest, query: Query[ActivityListQuery]) -> dict:
    _reject_unknown(request, ActivityListQuery)
    dates = {
        name: datetime.date.fromisoformat(value) if value else None
        for name, value in (("date_from", query.date_from), ("date_to", query.date_to))
    }
    if dates["date_from"] and dates["date_to"] and dates["date_from"] > dates["date_to"]:
        raise invalid("date_from is after date_to.", param="date_from")
    qs = activity.customer_activity(
        request.api_token.customer_id, kind=query.kind or "", **dates
    ).order_by()
    # Newest first by id (entries are appended; ids never repeat), like the other lists.
    after = parse_activity_api_id(query.starting_after) if query.starting_after else None
    before = parse_activity_api_id(query.ending_before) if query.ending_before else None
    rows, has_more = _id_page(qs, after, before, query.limit)
    return {
        "object": "list",
        "url": "/api/activity",
        "has_more": has_more,
        "data": [
            {
                "id": f"act_{item.entry_id}",
                "object": "activity",
                "created": int(item.when.timestamp()),
                "kind": item.kind,
                "kind_label": item.kind_label,
                "text": item.text,
            }
            for item in activity.describe(rows)
        ],
    }


@api.get(
    "/webhook_endpoints",
    response={200: WebhookEndpointListSchema, **_errors(400, 401, 403, 429)},
    auth=ScopedBearer(ApiScope.READ_WEBHOOK_ENDPOINTS),
    summary="List webhook endpoints",
    description=(
        "Scope `webhook_endpoints:read`. The customer's endpoints (managed on "
        "/settings/webhooks/), newest first, with the events each receives; never the "
        "signing secret."
    ),
    tags=["webhooks"],
    url_name="webhook-endpoint-list",
)
@api.get(
    "/webhook_endpoints/",
    include_in_schema=False,
    url_name="webhook-endpoint-list",
    auth=ScopedBearer(ApiScope.READ_WEBHOOK_ENDPOINTS),
)
def webhook_endpoint_list(request: HttpRequest, query: Query[WebhookEndpointListQuery]) -> dict:
    from .selectors import webhook_endpoints

    _reject_unknown(request, WebhookEndpointListQuery)
    qs = webhook_endpoints(request.api_token.customer_id).order_by()
    after = parse_webhook_endpoint_api_id(query.starting_after) if query.starting_after else None
    before = parse_webhook_endpoint_api_id(query.ending_before) if query.ending_before else None
    rows, has_more = _id_page(qs, after, before, query.limit)
    return {
        "object": "list",
        "url": "/api/webhook_endpoints",
        "has_more": has_more,
        "data": [
            {
                "id": f"we_{e.pk}",
                "object": "webhook_endpoint",
                "url": e.url,
                "description": e.description or None,
                "enabled_events": e.events,
                "status": "enabled" if e.enabled else "disabled",
                "disabled_reason": e.disabled_reason or None,
                "created": int(e.created_at.timestamp()),
            }
            for e in rows
        ],
    }


def billing_details_object(customer: Customer) -> dict:
    return {
        "id": f"cus_{customer.pk}",
        "object": "billing_details",
        **{name: getattr(customer, name) for name in BILLING_DETAIL_FIELDS},
    }


def _keyed(request: HttpRequest, token: ApiToken, body: dict, work) -> HttpResponse:
    """Run `work` once per Idempotency-Key; a repeat gets the first answer."""
    key = request.headers.get("Idempotency-Key")
    record = None
    if key is not None:
        claimed = idempotency.claim(
            token, key, idempotency.fingerprint(request.path.rstrip("/"), body)
        )
        if isinstance(claimed, JsonResponse):
            return claimed
        record = claimed
    try:
        response = work()
    except ApiError as exc:
        response = exc.response()
    except Exception:
        if record is not None:
            record.delete()  # let a retry with the same key run again
        raise
    if record is not None:
        idempotency.complete(record, response)
    return response


def _invoices(token: ApiToken, expand: set[str]) -> QuerySet[Invoice]:
    qs = (
        Invoice.objects.filter(customer_id=token.customer_id)
        .select_related("customer")
        .annotate(payment_processing=payment_processing_flag())
    )
    if expand & {"subscription", "subscription.customer"}:
        qs = qs.select_related("contract").prefetch_related(
            "contract__blocks",
            Prefetch(
                "contract__invoices",
                queryset=Invoice.objects.filter(status=InvoiceStatus.OPEN).select_related(
                    "contract"
                ),
                to_attr="prefetched_open_invoices",
            ),
        )
    return qs


def _delinquent(token: ApiToken, expand: set[str]) -> bool:
    """The expanded customer's `delinquent` flag; only an expanded customer shows it."""
    if "customer" not in expand and "subscription.customer" not in expand:
        return False
    return Invoice.objects.filter(
        overdue_q(timezone.localdate()), customer_id=token.customer_id
    ).exists()


def _invoice_response(token: ApiToken, invoice_id: str, expand: set[str]) -> JsonResponse:
    invoice = _get_invoice(token, invoice_id, expand)
    return JsonResponse(
        invoice_object(invoice, expand=expand, delinquent=_delinquent(token, expand))
    )


def _get_invoice(token: ApiToken, invoice_id: str, expand: set[str]) -> Invoice:
    pk = parse_invoice_api_id(invoice_id)
    invoice = _invoices(token, expand).filter(pk=pk).first() if pk else None
    if invoice is None:
        raise not_found(f"No such invoice: {invoice_id!r}.")
    return invoice


def _pay(
    token: ApiToken, invoice_id: str, body: dict, expand: set[str], key: str | None
) -> JsonResponse:
    from billing.payments.providers.base import (
        AuthenticationRequired,
        CardDeclined,
        PaymentError,
        ProviderUnavailable,
    )
    from billing.payments.services import invoice_pay_with_saved_method

    invoice = _get_invoice(token, invoice_id, expand)
    if not PaymentMethod.objects.filter(
        customer_id=token.customer_id,
        provider=settings.PAYMENT_PROVIDER,
        provider_id=body["payment_method"],
    ).exists():
        raise invalid(
            f"No such payment method: {body['payment_method']!r}.",
            param="payment_method",
            code="resource_missing",
        )
    if not invoice.is_payable:
        code, message = NOT_PAYABLE.get(
            invoice.status, ("invoice_not_payable", "This invoice cannot be paid.")
        )
        raise ApiError(409, message, code=code)
    try:
        invoice_pay_with_saved_method(
            invoice_id=invoice.pk,
            payment_method_id=body["payment_method"],
            off_session=body["off_session"],
            actor=token.user,
            idempotency_key=f"{token.pk}:{key}" if key else None,
        )
    except CardDeclined as exc:
        raise ApiError(402, str(exc), type="card_error", code="card_declined") from None
    except AuthenticationRequired as exc:
        raise ApiError(402, str(exc), type="card_error", code="authentication_required") from None
    except ProviderUnavailable as exc:
        raise ApiError(503, str(exc), type="api_error", code="provider_unavailable") from None
    except PaymentError as exc:
        raise ApiError(402, str(exc), type="card_error", code="payment_failed") from None
    except DomainError as exc:
        status = 409 if exc.code in ("invoice_not_payable", "payment_in_progress") else 400
        raise ApiError(status, exc.message, code=exc.code) from None
    return _invoice_response(token, invoice_id, expand)


def _report(token: ApiToken, invoice_id: str, body: dict) -> JsonResponse:
    invoice = _get_invoice(token, invoice_id, set())
    try:
        replies = invoice_signals.invoice_report_requested.send(
            sender=Invoice, invoice_id=invoice.pk, user=token.user, **body
        )
    except DomainError as exc:
        status = 409 if exc.code in ("already_reported", "not_reportable") else 400
        code = {
            "already_reported": "invoice_under_review",
            "not_reportable": "invoice_not_reportable",
        }.get(exc.code, "parameter_invalid")
        raise ApiError(status, exc.message, code=code) from None
    if len(replies) != 1:
        raise ApiError(503, "Reports cannot be taken right now.", type="api_error")
    return JsonResponse(invoice_report_object(replies[0][1], invoice))


@csrf_exempt
def schema(request: HttpRequest) -> HttpResponse:
    """The OpenAPI 3.1 document generated from the operations above; public."""
    if request.method != "GET":
        return _method_not_allowed(request, "GET")
    return JsonResponse(openapi_document())


def openapi_document() -> dict:
    """The generated document; its server is the site's URL of the moment (settings)."""
    return with_examples(
        {
            **api.get_openapi_schema(path_prefix="/api/"),
            "servers": [{"url": settings.SITE_URL}],
        }
    )


@csrf_exempt
def docs(request: HttpRequest) -> HttpResponse:
    """Swagger UI on the generated document; its assets come from the ninja package."""
    if request.method != "GET":
        return _method_not_allowed(request, "GET")
    return api.docs.render_page(request, api)


def _method_not_allowed(request: HttpRequest, allowed: str) -> HttpResponse:
    return ApiError(
        405,
        f"{request.method} is not allowed here; use {allowed}.",
        code="method_not_allowed",
        headers={"Allow": allowed},
    ).response()


def json_405(view):
    """ninja answers a wrong method with a bare text 405; the API answers its envelope.
    Every API operation runs in English (this wraps each one, see urls.py)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        # The JSON API speaks English whatever the browser asks (Accept-Language or the
        # pages' language cookie): activity texts, labels and messages stay stable for
        # the programs that read them.
        with translation.override("en"):
            response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            return _method_not_allowed(request, response["Allow"])
        return response

    return csrf_exempt(wrapped)


@csrf_exempt
def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Every other URL under /api/ answers JSON, never Django's HTML 404."""
    return ApiError(
        404,
        f"Unrecognized request URL ({request.method}: {request.path}).",
        code="resource_missing",
    ).response()
