"""The customer's invoice pages: list, detail and the CSV export.

PDFs and the ZIP live in billing.pdf.views, Pay online in billing.payment_views.
"""

import csv
import hashlib
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from contracts.context import member_required

from . import selectors
from .filters import PAGE_SIZES, SORT_LABELS, STATUS_CHOICES, parse_invoice_query
from .models import InvoiceStatus


def _sort_headers(query) -> list[dict]:
    """Each sortable column with the link that sorts by it (toggling direction)."""
    params = query.filter_params()
    if query.per_page != PAGE_SIZES[1]:
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
    filtered = selectors.invoice_filter(
        request.customer,
        today=today,
        status=query.status,
        q=query.q,
        date_from=query.date_from,
        date_to=query.date_to,
    )
    count = selectors.invoice_count(
        request.customer,
        filtered,
        today=today,
        status=query.status,
        q=query.q,
        date_from=query.date_from,
        date_to=query.date_to,
    )
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
    # Overdue badge), the role (Pay online) and this browser's CSRF secret (the row forms
    # carry a token for it, so no other browser is ever served them).
    get_token(request)  # makes sure this browser has its own secret before we key on it
    csrf_secret = hashlib.sha256(request.META["CSRF_COOKIE"].encode()).hexdigest()[:16]
    rows_key = (
        f"rows:{today}:{query.status}:{query.date_from}:{query.date_to}:{query.q.encode().hex()}:"
        f"{query.sort}:{query.per_page}:{number}:{int(can_pay)}:{csrf_secret}"
    )
    rows_html = selectors.cached_for_customer(
        request.customer.pk,
        rows_key,
        lambda: render_to_string(
            "billing/_invoice_rows.html",
            {
                "invoices": selectors.invoice_page(
                    selectors.invoice_list_rows(filtered),
                    sort_key=query.sort_key,
                    descending=query.descending,
                    offset=offset,
                    limit=query.per_page,
                    count=count,
                ),
                "today": today,
                "can_pay": can_pay,
            },
            request=request,
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
            "refunds": [r for p in payments for r in p.refunds.all()],
            "blocks": list(invoice.contract.blocks.all()) if invoice.contract_id else [],
            "can_pay": request.membership.can_pay,
            "statuses": InvoiceStatus,
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
        selectors.invoice_filter(
            request.customer,
            today=today,
            status=query.status,
            q=query.q,
            date_from=query.date_from,
            date_to=query.date_to,
        ),
        sort_key=query.sort_key,
        descending=query.descending,
    )
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(selectors.CSV_HEADER)
        for row in selectors.invoice_export_rows(qs):
            yield writer.writerow(row)

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="invoices-{today.isoformat()}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response
