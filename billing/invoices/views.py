"""The customer's invoice pages: list, detail and the CSV export.

PDFs and the ZIP live in billing.invoices.documents.views, Pay online in
billing.payments.views.
"""

import csv
import hashlib
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from billing.invoices import page_cache, selectors
from contracts.context import member_required

from .filters import DEFAULT_PAGE_SIZE, PAGE_SIZES, SORT_LABELS, STATUS_CHOICES, parse_invoice_query


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
@page_cache.per_browser
def invoice_list(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    query = parse_invoice_query(request.GET, customer=request.customer, today=today)
    can_pay = request.membership.can_pay
    # The page body is a function of the customer's invoices and of what the key names: the
    # query with its notes, today (the Overdue badge) and the role (Pay online). It is cached
    # under the customer's invoice-list version, which every invoice change replaces, and
    # holds no CSRF token, so any member's browser may be served it.
    notes = hashlib.blake2b("\n".join(query.notes).encode(), digest_size=8).hexdigest()
    key = (
        f"page:{today}:{query.filter_key()}:{query.sort}:{query.per_page}:{query.page}"
        f":{notes}:{int(can_pay)}"
    )
    body = selectors.cached_for_customer(
        request.customer.pk,
        key,
        lambda: _invoice_list_body(request.customer, query, today=today, can_pay=can_pay),
    )
    return render(
        request,
        "billing/invoice_list.html",
        {"body_html": mark_safe(body)},  # noqa: S308 - our own template's output
    )


def _invoice_list_body(customer, query, *, today, can_pay: bool) -> str:
    """The list page below the site header: notes, summary, filters, table, pagination."""
    filtered = selectors.invoice_filter(customer, query, today=today)  # lazy: no SQL yet
    count = selectors.invoice_count(customer, query, today=today, filtered=filtered)
    paginator = Paginator(range(count), query.per_page)
    number = query.page
    if number > paginator.num_pages:
        query.notes.append(
            f"There is no page {number}; showing page {paginator.num_pages}, the last one."
        )
        number = paginator.num_pages
    params = query.filter_params()
    keep = {**params, "sort": query.sort, "per_page": str(query.per_page)}
    return render_to_string(
        "billing/_invoice_list_body.html",
        {
            "query": query,
            "page": Page([], number, paginator),  # navigation only; the rows come next
            "invoices": selectors.invoice_page(
                selectors.invoice_list_rows(filtered),
                sort_key=query.sort_key,
                descending=query.descending,
                offset=(number - 1) * query.per_page,
                limit=query.per_page,
                count=count,
            ),
            "today": today,
            "summary": selectors.invoice_summary(
                customer, today=today, date_from=query.date_from, date_to=query.date_to
            ),
            "status_choices": STATUS_CHOICES,
            "page_sizes": PAGE_SIZES,
            "sort_headers": _sort_headers(query),
            "page_query": urlencode(keep),
            # The cards link to the filter that lists what each one adds up.
            "summary_query": "".join(
                f"{urlencode({k: params[k]})}&" for k in ("date_from", "date_to") if params.get(k)
            ),
            "export_query": urlencode({**params, "sort": query.sort}),
            "can_pay": can_pay,
        },
    )


@require_GET
@member_required()
def invoice_detail(request: HttpRequest, number: str) -> HttpResponse:
    invoice = selectors.invoice_detail(request.customer, number)
    today = timezone.localdate()
    payments = sorted(invoice.payments.all(), key=lambda p: (p.created_at, p.pk))
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
            "credit_notes": list(invoice.credit_notes.all()),
        },
    )


@require_GET
@member_required()
def credit_note_detail(request: HttpRequest, number: str) -> HttpResponse:
    note = selectors.credit_note_for_customer_or_404(request.customer, number)
    refunds = sorted(note.refunds.all(), key=lambda r: (r.created_at, r.pk))
    return render(
        request,
        "billing/credit_note_detail.html",
        {
            "note": note,
            "invoice": note.invoice,
            "lines": note.lines.all(),
            "tax_lines": note.tax_lines.all(),
            "refunds": refunds,
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
    query = parse_invoice_query(request.GET, customer=request.customer, today=today)
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
        for row in selectors.credit_note_export_rows(qs):
            yield writer.writerow(row)

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="invoices-{today.isoformat()}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response
