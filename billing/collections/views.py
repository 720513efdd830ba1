"""Report a problem with an invoice (ARCHITECTURE.md §6: /invoices/<number>/report/)."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from billing.invoices.selectors import invoice_for_customer_or_404
from contracts.context import member_required
from core.errors import DomainError

from .forms import InvoiceReportForm
from .selectors import invoice_is_under_review, report_refusal
from .services import invoice_report_open


@require_http_methods(["GET", "POST"])
@member_required(paying=True)
def invoice_report(request: HttpRequest, number: str) -> HttpResponse:
    """Owners and billing members report a problem; viewers get 403, another customer's
    invoice 404. A refused report (already under review, void, settled long ago) shows
    the reason instead of the form, and changes nothing."""
    invoice = invoice_for_customer_or_404(request.customer, number)
    form = InvoiceReportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            invoice_report_open(
                invoice_id=invoice.pk,
                reported_by=request.user,
                actor=request.user,
                **form.cleaned_data,
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                _(
                    "Thank you. Invoice %(number)s is now under review: we do not charge, "
                    "remind or cancel anything for it until we have answered you."
                )
                % {"number": invoice.number},
            )
            return redirect(invoice.get_absolute_url())
    refusal = report_refusal(
        invoice, now=timezone.now(), already_reported=invoice_is_under_review(invoice.pk)
    )
    status = 200 if request.method == "GET" or refusal is None else 409
    if form.errors and not refusal:
        status = 400
    return render(
        request,
        "billing/collections/invoice_report.html",
        {"invoice": invoice, "form": form, "refusal": refusal},
        status=status,
    )
