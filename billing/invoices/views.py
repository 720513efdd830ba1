"""The customer's invoice pages: list, detail and the CSV export.

PDFs and the ZIP live in billing.invoices.documents.views, Pay online in
billing.payments.views.
"""

import csv
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from billing.invoices import selectors
from contracts.context import member_required

from .filters import (
    DEFAULT_PAGE_SIZE,
    PAGE_SIZES,
    SORT_LABELS,
    STATUS_CHOICES,
    Cursor,
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


@dataclass
class _Row:
    """One table row, every value ready to print: the template only concatenates."""

    ref: str
    number: str
    url: str
    pdf_url: str
    pay_url: str
    xml_url: str
    issued: str
    due: str
    amount: str
    currency: str
    badge: str
    badge_label: str
    processing: bool
    under_review: bool
    credit_notes: list[tuple[str, str, str]]  # number, url, amount


class _Urls:
    """Each row URL reversed once per request (with a placeholder) instead of per row."""

    def __init__(self, name: str):
        self.head, _, self.tail = reverse(name, args=["PLACEHOLDER"]).partition("PLACEHOLDER")

    def __call__(self, ref: str) -> str:
        return f"{self.head}{quote(ref)}{self.tail}"


def _display_rows(invoices, *, today, can_pay: bool) -> list[_Row]:
    detail, pdf, xml = (_Urls(f"invoices:invoice-{n}") for n in ("detail", "pdf", "xml"))
    pay, note = _Urls("payments:invoice-pay"), _Urls("invoices:credit-note-detail")
    overdue = _("Overdue")
    rows = []
    for inv in invoices:
        ref = inv.ref
        late = inv.is_overdue(today)
        rows.append(
            _Row(
                ref=ref,
                number=inv.number or "",
                url=detail(ref),
                pdf_url=pdf(ref) if inv.number else "",
                pay_url=pay(ref)
                if can_pay and inv.is_payable and not inv.payment_processing
                else "",
                xml_url=xml(ref) if inv.has_einvoice else "",
                issued=inv.issue_date.isoformat() if inv.issue_date else "—",
                due=inv.due_date.isoformat() if inv.due_date else "—",
                amount=floatformat(inv.total, "2g"),
                currency=inv.currency,
                badge="overdue" if late else inv.status,
                badge_label=overdue if late else inv.get_status_display(),
                processing=inv.payment_processing,
                under_review=inv.under_review,
                credit_notes=[
                    (n.number, note(n.number), floatformat(n.total, "2g"))
                    for n in inv.credit_notes.all()
                ],
            )
        )
    return rows


def _page_links(query, page, rows, keep: dict) -> dict:
    """First / previous / next / last links of a keyset page (cursors of its edge rows)."""
    base = urlencode(keep)
    links = {}
    if page.has_previous:
        links["first"] = f"?{base}"
        first = rows[0]
        cursor = Cursor(query.sort, selectors.cursor_value(first, query.sort_key), first.pk, False)
        links["previous"] = f"?{base}&{urlencode({'cursor': cursor.encode()})}"
    if page.has_next:
        last = rows[-1]
        cursor = Cursor(query.sort, selectors.cursor_value(last, query.sort_key), last.pk, True)
        links["next"] = f"?{base}&{urlencode({'cursor': cursor.encode()})}"
        links["last"] = f"?{base}&last=1"
    return links


@require_GET
@member_required()
def invoice_list(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    customer = request.customer
    query = parse_invoice_query(request.GET, customer=customer, today=today)
    can_pay = request.membership.can_pay
    filtered = selectors.invoice_filter(customer, query, today=today)  # lazy: no SQL yet
    totals = selectors.invoice_list_totals(customer, query, today=today, filtered=filtered)
    rows_qs = selectors.invoice_list_rows(filtered)
    if query.page > 1 and not (query.cursor or query.last or query.jump):
        # An old ?page=N link: still served (reading from the nearer end), with keyset
        # links onwards.
        pages = max(-(-totals.count // query.per_page), 1)
        if query.page > pages:
            query.notes.append(
                _("There is no page %(page)s; showing page %(last)s, the last one.")
                % {"page": query.page, "last": pages}
            )
            query.page = pages
        invoices = selectors.invoice_page(
            rows_qs,
            sort_key=query.sort_key,
            descending=query.descending,
            offset=(query.page - 1) * query.per_page,
            limit=query.per_page,
            count=totals.count,
        )
        page = selectors.KeysetPage(
            invoices, query.page > 1, query.page * query.per_page < totals.count
        )
    else:
        page = selectors.invoice_keyset_page(
            rows_qs,
            sort_key=query.sort_key,
            descending=query.descending,
            limit=query.per_page,
            cursor=query.cursor,
            last=query.last,
            jump=query.jump,
        )
    params = query.filter_params()
    keep = {**params, "sort": query.sort, "per_page": str(query.per_page)}
    return render(
        request,
        "billing/invoice_list.html",
        {
            "query": query,
            "count": totals.count,
            "count_is_lower_bound": totals.count_is_lower_bound,
            "page": page,
            "page_links": _page_links(query, page, page.rows, keep),
            "rows": _display_rows(page.rows, today=today, can_pay=can_pay),
            "invoices": page.rows,
            "summary": totals.summary,
            "summary_cards": [
                {
                    "currency": t.currency,
                    "paid": floatformat(t.paid, "2g"),
                    "pending": floatformat(t.pending, "2g"),
                    "overdue": floatformat(t.overdue, "2g"),
                    "written_off": floatformat(t.written_off, "2g") if t.written_off else "",
                }
                for t in totals.summary
            ],
            "status_choices": STATUS_CHOICES,
            "page_sizes": PAGE_SIZES,
            "sort_headers": _sort_headers(query),
            "keep_fields": [(k, v) for k, v in keep.items()],
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
