"""The JSON API: list and read invoices, pay one with a saved payment method.

Bearer tokens with scopes; every answer is JSON; errors use the Stripe-like
envelope of billing.api.errors. Views stay thin: payment goes through
billing.payments.services, the same service the invoice page uses.
"""

import datetime
import json
import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from billing.api.models import ApiScope, ApiToken
from billing.invoices import signals as invoice_signals
from billing.invoices.models import Invoice, InvoiceStatus, overdue_q
from billing.payments.models import PaymentMethod
from contracts.auth import FailureCounter, client_ip
from core.errors import DomainError

from . import idempotency
from .errors import ApiError, invalid, not_found
from .ratelimit import check_rate
from .schema import openapi_document
from .serializers import (
    EXPANDABLE,
    STATUS_FOR_API,
    invoice_object,
    invoice_report_object,
    parse_invoice_api_id,
    report_reasons,
)
from .tokens import UNKNOWN_TOKEN, token_authenticate

logger = logging.getLogger(__name__)

MAX_LIMIT = 100
MAX_UNIX_TIME = 32503680000  # 3000-01-01, as in the OpenAPI document
LIST_PARAMS = {
    "limit",
    "starting_after",
    "ending_before",
    "status",
    "created[gte]",
    "created[lte]",
    "expand[]",
    "expand",
}
NOT_PAYABLE = {
    InvoiceStatus.PAID: ("invoice_already_paid", "This invoice is already paid."),
    InvoiceStatus.REFUND: ("invoice_already_paid", "This invoice was paid and refunded."),
    InvoiceStatus.VOID: ("invoice_void", "This invoice is void; do not pay it."),
    InvoiceStatus.DRAFT: ("invoice_draft", "This invoice is a draft and cannot be paid yet."),
}


def api_view(*, methods: tuple[str, ...], scope: str | None) -> Callable:
    """Authenticate the bearer token, check scope and rate, and turn every error into JSON."""

    def decorator(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> JsonResponse:
            try:
                if request.method not in methods:
                    raise ApiError(
                        405,
                        f"{request.method} is not allowed here; use {', '.join(methods)}.",
                        code="method_not_allowed",
                        headers={"Allow": ", ".join(methods)},
                    )
                if scope is None:
                    return view(request, *args, **kwargs)
                token = _authenticate(request)
                if not token.has_scope(scope):
                    raise ApiError(
                        403,
                        f"This token lacks the scope {scope!r}.",
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
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return exc.response()
            except RequestDataTooBig:
                # config.middleware.RequestGuardMiddleware answers first when it is
                # installed; this keeps the answer a 413 without it.
                return _too_large().response()
            except Exception:
                logger.exception("API error on %s", request.path)
                return ApiError(
                    500, "Something went wrong on our side.", type="api_error"
                ).response()

        return wrapped

    return decorator


def _too_large() -> ApiError:
    return ApiError(
        413,
        f"The request body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        code="request_too_large",
    )


def _clean_text(value: str) -> bool:
    """Printable text PostgreSQL can store: no NUL or other control character, no lone
    surrogate (JSON's "\\ud800" decodes to one, and UTF-8 cannot encode it)."""
    return value.isprintable()


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


def _expand(values: list, *, param: str = "expand") -> set[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise invalid("expand must be an array of strings.", param=param)
    unknown = [v for v in values if v not in EXPANDABLE]
    if unknown:
        raise invalid(
            f"Cannot expand {unknown[0]!r}; expandable: {', '.join(EXPANDABLE)}.", param=param
        )
    return set(values)


def _invoices(token: ApiToken, expand: set[str]) -> QuerySet[Invoice]:
    qs = Invoice.objects.filter(customer_id=token.customer_id).select_related("customer")
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


def _int_param(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid(f"{name} must be an integer.", param=name) from None


def _cursor(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name)
    if value is None:
        return None
    cursor = parse_invoice_api_id(value)
    if cursor is None:
        raise invalid(f"{name} must be an invoice id such as in_123.", param=name)
    return cursor


@api_view(methods=("GET",), scope=ApiScope.READ_INVOICES)
def invoice_list(request: HttpRequest) -> JsonResponse:
    token = request.api_token
    unknown = sorted(set(request.GET) - LIST_PARAMS)
    if unknown:
        raise invalid(
            f"Received unknown parameter: {unknown[0]}.", param=unknown[0], code="parameter_unknown"
        )
    expand = _expand(request.GET.getlist("expand[]") + request.GET.getlist("expand"))
    limit = _int_param(request, "limit")
    limit = 10 if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(f"limit must be between 1 and {MAX_LIMIT}.", param="limit")
    qs = _invoices(token, expand)
    status = request.GET.get("status")
    if status is not None:
        if status not in set(STATUS_FOR_API.values()):
            raise invalid(
                f"Unknown status {status!r}; use draft, open, paid, uncollectible or void.",
                param="status",
            )
        qs = qs.filter(status__in=[s for s, api in STATUS_FOR_API.items() if api == status])
    for name, lookup in (("created[gte]", "created_at__gte"), ("created[lte]", "created_at__lte")):
        value = _int_param(request, name)
        if value is not None:
            if not 0 <= value <= MAX_UNIX_TIME:
                raise invalid(f"{name} is not a valid Unix time.", param=name)
            qs = qs.filter(**{lookup: datetime.datetime.fromtimestamp(value, tz=datetime.UTC)})
    # Newest first by id, like Stripe; a cursor is an invoice id from a previous page.
    # Both cursors together select the window between them, read from starting_after.
    after = _cursor(request, "starting_after")
    before = _cursor(request, "ending_before")
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
    delinquent = _delinquent(token, expand)
    return JsonResponse(
        {
            "object": "list",
            "url": "/api/invoices/",
            "has_more": has_more,
            "data": [invoice_object(i, expand=expand, delinquent=delinquent) for i in rows],
        }
    )


@api_view(methods=("GET",), scope=ApiScope.READ_INVOICES)
def invoice_detail(request: HttpRequest, invoice_id: str) -> JsonResponse:
    token = request.api_token
    unknown = sorted(set(request.GET) - {"expand[]", "expand"})
    if unknown:
        raise invalid(
            f"Received unknown parameter: {unknown[0]}.", param=unknown[0], code="parameter_unknown"
        )
    expand = _expand(request.GET.getlist("expand[]") + request.GET.getlist("expand"))
    return _invoice_response(token, invoice_id, expand)


def _pay_body(request: HttpRequest) -> dict:
    if not request.body:
        raise invalid(
            "Missing required param: payment_method.",
            param="payment_method",
            code="parameter_missing",
        )
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise invalid("The request body must be a JSON object.", code="body_invalid") from None
    except RecursionError:
        raise invalid("The request body is nested too deeply.", code="body_invalid") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", code="body_invalid")
    unknown = sorted(set(body) - {"payment_method", "off_session", "expand"})
    if unknown:
        raise invalid(
            f"Received unknown parameter: {unknown[0]}.", param=unknown[0], code="parameter_unknown"
        )
    method = body.get("payment_method")
    if method is None:
        raise invalid(
            "Missing required param: payment_method.",
            param="payment_method",
            code="parameter_missing",
        )
    if (
        not isinstance(method, str)
        or not method.strip()
        or len(method) > 255
        or not _clean_text(method)
    ):
        raise invalid("payment_method must be a payment method id string.", param="payment_method")
    off_session = body.get("off_session", False)
    if not isinstance(off_session, bool):
        raise invalid("off_session must be a boolean.", param="off_session")
    return {"payment_method": method, "off_session": off_session, "expand": body.get("expand", [])}


@api_view(methods=("POST",), scope=ApiScope.PAY_INVOICES)
def invoice_pay(request: HttpRequest, invoice_id: str) -> JsonResponse:
    token = request.api_token
    body = _pay_body(request)
    expand = _expand(body["expand"])
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
        response = _pay(token, invoice_id, body, expand, key)
    except ApiError as exc:
        response = exc.response()
    except Exception:
        if record is not None:
            record.delete()  # let a retry with the same key run again
        raise
    if record is not None:
        idempotency.complete(record, response)
    return response


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


REPORT_FIELDS = {"reason", "description", "expected_correction"}
REPORT_TEXT_LIMITS = {"description": 4000, "expected_correction": 2000}


def _storable_text(value: str) -> bool:
    """Free text PostgreSQL can store (line breaks allowed): no NUL, no lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _report_body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise invalid("The request body must be a JSON object.", code="body_invalid") from None
    except RecursionError:
        raise invalid("The request body is nested too deeply.", code="body_invalid") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", code="body_invalid")
    unknown = sorted(set(body) - REPORT_FIELDS)
    if unknown:
        raise invalid(
            f"Received unknown parameter: {unknown[0]}.", param=unknown[0], code="parameter_unknown"
        )
    reasons = report_reasons()
    reason = body.get("reason")
    if reason is None:
        raise invalid("Missing required param: reason.", param="reason", code="parameter_missing")
    if reason not in reasons:
        raise invalid(f"reason must be one of: {', '.join(reasons)}.", param="reason")
    clean = {"reason": reason}
    for name, limit in REPORT_TEXT_LIMITS.items():
        value = body.get(name, "")
        if not isinstance(value, str) or not _storable_text(value):
            raise invalid(f"{name} must be a string of text.", param=name)
        if len(value) > limit:
            raise invalid(f"{name} has at most {limit} characters.", param=name)
        clean[name] = value.strip()
    if not clean["description"]:
        raise invalid(
            "Missing required param: description (what is wrong with the invoice).",
            param="description",
            code="parameter_missing",
        )
    return clean


@api_view(methods=("POST",), scope=ApiScope.DISPUTE_INVOICES)
def invoice_report(request: HttpRequest, invoice_id: str) -> JsonResponse:
    """Report a problem with an invoice: it is under review (no automatic charge, reminder
    or cancellation) until staff answer. The same Idempotency-Key replays the answer."""
    token = request.api_token
    body = _report_body(request)
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
        response = _report(token, invoice_id, body)
    except ApiError as exc:
        response = exc.response()
    except Exception:
        if record is not None:
            record.delete()  # let a retry with the same key run again
        raise
    if record is not None:
        idempotency.complete(record, response)
    return response


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


@api_view(methods=("GET",), scope=None)
def schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document())


@api_view(methods=("GET", "POST", "PUT", "PATCH", "DELETE"), scope=None)
def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    raise ApiError(
        404,
        f"Unrecognized request URL ({request.method}: {request.path}).",
        code="resource_missing",
    )
