"""The customer's invoice pages: list, detail and the CSV export.

PDFs and the ZIP live in billing.pdf.views, Pay online in billing.payment_views.
"""

import csv
import functools
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from contracts.context import member_required

from . import selectors
from .filters import (
    DEFAULT_PAGE_SIZE,
    PAGE_SIZES,
    SORT_LABELS,
    STATUS_CHOICES,
    parse_invoice_query,
)


def _sort_headers(query) -> list[dict]:
    """Each sortable column with the link that sorts by it (toggling direction)."""
    params = query.filter_params()
    if query.per_page != DEFAULT_PAGE_SIZE:
        params["per_page"] = str(query.per_page)
    headers = []
    for key, label in SORT_LABELS.items():
        active = query.sort_key == key
        next_sort = key if active and query.descending else f"-{key}"
        if not active and key in ("number", "status"):
            next_sort = key
        headers.append(
            {
                "key": key,
                "label": label,
                "url": "?" + urlencode({**params, "sort": next_sort}),
                "aria_sort": ("descending" if query.descending else "ascending")
                if active
                else "none",
            }
        )
    return headers


@require_GET
@member_required()
def invoice_list(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    query = parse_invoice_query(request.GET)
    # Built only on a cache miss: a cached count and cached rows run no search at all.
    filtered = functools.cache(
        lambda: selectors.invoice_filter(request.customer, query, today=today)
    )
    count = selectors.invoice_count(request.customer, query, today=today, filtered=filtered)
    paginator = Paginator(range(count), query.per_page)
    number = query.page
    if number > paginator.num_pages:
        query.notes.append(
            f"There is no page {number}; showing page {paginator.num_pages}, the last one."
        )
        number = paginator.num_pages
    offset = (number - 1) * query.per_page
    page = Page([], number, paginator)  # navigation only; the rows are rendered below
    can_pay = request.membership.can_pay
    # The rendered rows are cached under the customer's invoice-list version (bumped by
    # every invoice change), keyed on everything they show: the page asked for, today (the
    # Overdue badge) and the role (Pay online). They hold no CSRF token (the Pay online
    # buttons submit the page's one pay form), so any member's browser may be served them.
    rows_key = (
        f"rows:{today}:{query.filter_key()}:{query.sort}:{query.per_page}:{number}:{int(can_pay)}"
    )
    rows_html = selectors.cached_for_customer(
        request.customer.pk,
        rows_key,
        lambda: render_to_string(
            "billing/_invoice_rows.html",
            {
                "invoices": selectors.invoice_page(
                    selectors.invoice_list_rows(filtered()),
                    sort_key=query.sort_key,
                    descending=query.descending,
                    offset=offset,
                    limit=query.per_page,
                    count=count,
                ),
                "today": today,
                "can_pay": can_pay,
            },
        ),
    )

    params = query.filter_params()
    keep = {**params, "sort": query.sort, "per_page": str(query.per_page)}
    return render(
        request,
        "billing/invoice_list.html",
        {
            "query": query,
            "page": page,
            "today": today,
            "summary": selectors.invoice_summary(
                request.customer, today=today, date_from=query.date_from, date_to=query.date_to
            ),
            "status_choices": STATUS_CHOICES,
            "page_sizes": PAGE_SIZES,
            "sort_headers": _sort_headers(query),
            "page_query": urlencode(keep),
            "export_query": urlencode({**params, "sort": query.sort}),
            "can_pay": can_pay,
            "rows_html": mark_safe(rows_html),  # noqa: S308 - our own template's output
        },
    )


@require_GET
@member_required()
def invoice_detail(request: HttpRequest, number: str) -> HttpResponse:
    invoice = selectors.invoice_detail(request.customer, number)
    today = timezone.localdate()
    payments = list(invoice.payments.all())
    return render(
        request,
        "billing/invoice_detail.html",
        {
            "invoice": invoice,
            "today": today,
            "is_overdue": invoice.is_overdue(today),
            "lines": invoice.lines.all(),
            "tax_lines": invoice.tax_lines.all(),
            "payments": payments,
            "failed_payments": [p for p in payments if p.failure_message or p.failure_code],
            "blocks": list(invoice.contract.blocks.all()) if invoice.contract_id else [],
            "can_pay": request.membership.can_pay,
        },
    )


class _Echo:
    """A file-like object whose write() hands the line back, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


@require_GET
@member_required()
def invoice_export_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Every invoice of the current filter (not just the page), streamed as it is read."""
    today = timezone.localdate()
    query = parse_invoice_query(request.GET)
    qs = selectors.invoice_ordered(
        selectors.invoice_filter(request.customer, query, today=today),
        sort_key=query.sort_key,
        descending=query.descending,
    )
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(selectors.CSV_HEADER)
        for row in selectors.invoice_export_rows(qs, current_vat=request.customer.tax_id):
            yield writer.writerow(row)

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="invoices-{today.isoformat()}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response
