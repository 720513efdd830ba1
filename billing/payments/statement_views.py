"""The customer's statement of account: the page, its PDF and its CSV (any member)."""

import datetime
import logging
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from contracts.context import member_required
from core.errors import DomainError

from .statements import (
    Statement,
    statement_build,
    statement_csv,
    statement_currencies,
    statement_filename,
    statement_pdf,
)

logger = logging.getLogger(__name__)


def _date(request: HttpRequest, name: str, label: str) -> datetime.date | None:
    value = request.GET.get(name, "").strip()
    if not value:
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        message = {
            "start": _("The start date must look like 2026-01-31."),
            "end": _("The end date must look like 2026-01-31."),
        }[label]
        raise DomainError(message, code=name) from None


def _statement(request: HttpRequest) -> tuple[Statement | None, dict]:
    """The statement the query asks for, or None with the message saying why not."""
    currencies = statement_currencies(request.customer)
    form = {
        "currency": request.GET.get("currency", currencies[0]).upper(),
        "start": request.GET.get("start", ""),
        "end": request.GET.get("end", ""),
        "currencies": currencies,
        "error": "",
    }
    try:
        if form["currency"] not in currencies:
            raise DomainError(
                _("You have no invoices in “%(currency)s”; choose one of %(choices)s.")
                % {"currency": form["currency"][:3], "choices": ", ".join(currencies)},
                code="currency",
            )
        statement = statement_build(
            customer=request.customer,
            currency=form["currency"],
            start=_date(request, "start", "start"),
            end=_date(request, "end", "end"),
        )
    except DomainError as exc:
        form["error"] = exc.message
        return None, form
    form["start"], form["end"] = statement.start.isoformat(), statement.end.isoformat()
    return statement, form


@require_GET
@member_required()
def statement_page(request: HttpRequest) -> HttpResponse:
    statement, form = _statement(request)
    query = urlencode({"currency": form["currency"], "start": form["start"], "end": form["end"]})
    return render(
        request,
        "billing/statement.html",
        {"s": statement, "form": form, "query": query, "today": timezone.localdate()},
        status=400 if form["error"] else 200,
    )


def _refused(request: HttpRequest, message: str) -> HttpResponse:
    return render(
        request, "billing/pdf/download_refused.html", {"message": message, "refs": []}, status=400
    )


@require_GET
@member_required()
def statement_download_csv(request: HttpRequest) -> HttpResponse:
    statement, form = _statement(request)
    if statement is None:
        return _refused(request, form["error"])
    response = HttpResponse(statement_csv(statement), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="{statement_filename(statement, "csv")}"'
    )
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
@member_required()
def statement_download_pdf(request: HttpRequest) -> HttpResponse:
    statement, form = _statement(request)
    if statement is None:
        return _refused(request, form["error"])
    try:
        content = statement_pdf(statement)
    except Exception:  # a clear message, never a 500 page
        logger.exception("statement PDF of customer %s failed", request.customer.pk)
        return render(
            request,
            "billing/pdf/download_refused.html",
            {"message": _("The statement PDF could not be produced just now; try again.")},
            status=503,
        )
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = (
        f'attachment; filename="{statement_filename(statement, "pdf")}"'
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
