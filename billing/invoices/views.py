"""The customer's invoice pages: list, detail and the CSV export.

PDFs and the ZIP live in billing.invoices.documents.views, Pay online in
billing.payments.views.
"""

import csv
import functools
import html
from urllib.parse import quote, urlencode

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import get_format
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from billing.invoices import list_cache, selectors
from billing.invoices.models import InvoiceStatus
from contracts.context import member_required
from core import l10n

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


def escape(value) -> str:
    """Django's escape() without its lazy-argument wrapper (the same html.escape inside):
    called about 300 times per page, the wrapper alone cost a few tenths of a millisecond."""
    return html.escape(str(value))


class _Amounts:
    """Amounts as the template's floatformat:"2g" writes them ("1,234.50"; German
    "1.234,50"), with the separators looked up once per page: floatformat itself took
    about as long as the rest of a row."""

    def __init__(self):
        self.table = str.maketrans(
            {",": str(get_format("THOUSAND_SEPARATOR")), ".": str(get_format("DECIMAL_SEPARATOR"))}
        )

    def __call__(self, value) -> str:
        return f"{value:,.2f}".translate(self.table)


@functools.lru_cache(maxsize=4096)
def _date_text(value, language: str) -> str:
    return l10n.date(value, language)


class _Dates:
    """Dates as the page's language writes them ("1 Mar 2026", "01.03.2026"). Babel takes
    about 8 µs a date; a page's rows repeat the same few dates and so do page views, so
    each (date, language) is formatted once per process."""

    def __init__(self):
        self.language = translation.get_language() or "en"

    def __call__(self, value) -> str:
        return "—" if value is None else _date_text(value, self.language)


class _Urls:
    """Each row URL reversed once per request (with a placeholder) instead of per row."""

    def __init__(self, name: str):
        self.head, _, self.tail = reverse(name, args=["PLACEHOLDER"]).partition("PLACEHOLDER")

    def __call__(self, ref: str) -> str:
        return f"{self.head}{quote(ref)}{self.tail}"


def _rows_html(invoices, *, today, can_pay: bool) -> str:
    """The table rows, written here rather than by the template engine.

    Django's engine spent about 5 ms of Python on 25 rows (some 30 variables, an include
    and a translation per row, each resolved, localized and escaped on its own); this
    is the same markup for a small fraction of that. Every value from the database goes
    through escape(); labels are translated once per page.
    """
    if not invoices:
        empty = escape(_("No invoices match this filter."))
        return f'<tr><td colspan="8" class="empty">{empty}</td></tr>'
    detail, pdf, xml = (_Urls(f"invoices:invoice-{n}") for n in ("detail", "pdf", "xml"))
    pay, note_url = _Urls("payments:invoice-pay"), _Urls("invoices:credit-note-detail")
    label = {
        key: escape(text)
        for key, text in {
            "draft": _("Draft"),
            "draft_name": _("draft invoice"),
            "select": _("Select"),
            "issued": _("Issued"),
            "due": _("Due"),
            "credit": _("Credit notes"),
            "none": _("none"),
            "credit_of": _("Credit note of"),
            "actions": _("Actions for"),
            "view": _("View"),
            "pdf": _("Download pdf"),
            "pay": _("Pay online"),
            "xml": _("Download XML (XRechnung)"),
            "overdue": _("Overdue"),
            "processing": _("Payment processing"),
            "review": _("Under review"),
        }.items()
    }
    status_label = {value: escape(text) for value, text in InvoiceStatus.choices}
    amount = _Amounts()
    date = _Dates()
    out = []
    for inv in invoices:
        ref = inv.ref
        url = escape(detail(ref))
        number = escape(inv.number or "")
        name = number or label["draft_name"]
        currency = escape(inv.currency)
        if inv.is_overdue(today):
            badge = f'<span class="badge badge--overdue">{label["overdue"]}</span>'
        else:
            badge = (
                f'<span class="badge badge--{escape(inv.status)}">'
                f"{status_label.get(inv.status, escape(inv.status))}</span>"
            )
        if inv.payment_processing:
            badge += f' <span class="badge badge--processing">{label["processing"]}</span>'
        if inv.under_review:
            badge += f' <span class="badge badge--review">{label["review"]}</span>'
        notes = selectors.credit_notes_of(inv)
        if notes:
            credit = ", ".join(
                f'<a href="{escape(note_url(note))}" title="{label["credit_of"]} '
                f'{amount(total)} {currency}">{escape(note)}</a>'
                for note, total in notes
            )
            credit_class = "col-credit"
        else:
            credit = f'<span class="muted" aria-label="{label["none"]}">—</span>'
            credit_class = "col-credit col-credit--none"
        menu = [f'<li role="none"><a role="menuitem" href="{url}">{label["view"]}</a></li>']
        if inv.number:
            menu.append(
                f'<li role="none"><a role="menuitem" href="{escape(pdf(ref))}" download>'
                f"{label['pdf']}</a></li>"
            )
        if can_pay and inv.is_payable and not inv.payment_processing:
            menu.append(
                f'<li role="none"><button role="menuitem" type="submit" form="pay-form" '
                f'formaction="{escape(pay(ref))}">{label["pay"]}</button></li>'
            )
        if inv.has_einvoice:
            menu.append(
                f'<li role="none"><a role="menuitem" href="{escape(xml(ref))}" download>'
                f"{label['xml']}</a></li>"
            )
        select = (
            f'<label class="check-hit"><input type="checkbox" name="numbers" value="{number}" '
            f'form="download-form" aria-label="{label["select"]} {number}"></label>'
            if number
            else ""
        )
        out.append(
            f'<tr data-invoice="{escape(ref)}">'
            f'<td class="col-select">{select}</td>'
            f'<td class="col-number"><a href="{url}">{number or label["draft"]}</a></td>'
            f'<td class="col-issued" data-label="{label["issued"]}">'
            f"{date(inv.issue_date)}</td>"
            f'<td class="col-due" data-label="{label["due"]}">'
            f"{date(inv.due_date)}</td>"
            f'<td class="num col-amount">{amount(inv.total)} {currency}</td>'
            f'<td class="col-status">{badge}</td>'
            f'<td class="{credit_class}" data-label="{label["credit"]}">{credit}</td>'
            f'<td class="col-menu"><details class="row-menu" data-menu>'
            f'<summary class="row-menu__button" aria-haspopup="menu" '
            f'aria-label="{label["actions"]} {name}"><span aria-hidden="true">⋮</span></summary>'
            f'<ul class="row-menu__list" role="menu" aria-label="{label["actions"]} {name}">'
            f"{''.join(menu)}</ul></details></td></tr>"
        )
    return "\n".join(out)


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
    can_pay = request.membership.can_pay
    # The version was read with the user, before any of the list's data (list_cache): a
    # repeat view is a cache get; the shell around the body is rendered as always.
    body = list_cache.list_body(customer, request.GET, today=today, can_pay=can_pay)
    if body.html is not None:
        return render(request, "billing/invoice_list.html", {"body": body})
    query = parse_invoice_query(request.GET, customer=customer, today=today)
    filtered = selectors.invoice_filter(customer, query, today=today)  # lazy: no SQL yet
    totals = body.totals(
        lambda: selectors.invoice_list_totals(customer, query, today=today, filtered=filtered)
    )
    rows_qs = selectors.invoice_list_row_values(filtered)
    if query.page > 1 and not (query.cursor or query.last or query.jump):
        # An old ?page=N link: the page after the invoice just before it (found through
        # the index from the nearer end), with keyset links onwards.
        pages = max(-(-totals.count // query.per_page), 1)
        if query.page > pages:
            query.notes.append(
                _("There is no page %(page)s; showing page %(last)s, the last one.")
                % {"page": query.page, "last": pages}
            )
            query.page = pages
        if query.page > 1:
            place = selectors.invoice_place_at(
                customer,
                query,
                filtered,
                position=(query.page - 1) * query.per_page - 1,
                count=totals.count,
            )
            if place is not None:
                query.cursor = Cursor(query.sort, place[0], place[1], True)
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
    amount = _Amounts()
    return render(
        request,
        "billing/invoice_list.html",
        {
            "query": query,
            "count": totals.count,
            "count_is_lower_bound": totals.count_is_lower_bound,
            "page": page,
            "page_links": _page_links(query, page, page.rows, keep),
            "rows_html": mark_safe(  # noqa: S308 - every value escaped in _rows_html
                _rows_html(page.rows, today=today, can_pay=can_pay)
            ),
            "invoices": page.rows,
            "summary": totals.summary,
            "summary_cards": [
                {
                    "currency": t.currency,
                    "paid": amount(t.paid),
                    "pending": amount(t.pending),
                    "overdue": amount(t.overdue),
                    "written_off": amount(t.written_off) if t.written_off else "",
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
            "body": body,  # the template's {% list_body %} stores what it renders
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
