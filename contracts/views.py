"""The customer's IP-Blocks (lease contracts), billing details and the choice of which
customer to act for."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from contracts import selectors, services
from core import activity

from .context import active_membership, choose_customer, member_required, memberships_of
from .forms import BillingDetailsForm
from .taxids import country_name


@require_GET
@member_required()
def contract_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "contracts/contract_list.html",
        {"contracts": list(selectors.contract_list(request.customer))},
    )


@require_GET
@member_required()
def contract_detail(request: HttpRequest, pk: int) -> HttpResponse:
    contract = selectors.contract_detail(request.customer, pk)
    return render(
        request,
        "contracts/contract_detail.html",
        {
            "contract": contract,
            "blocks": contract.blocks.all(),
            "assignments": contract.assignment_requests.all(),
            "rdns": contract.rdns_delegations.all(),
            "invoices": sorted(
                contract.invoices.all(), key=lambda i: (i.period_start, i.pk), reverse=True
            ),
            "can_pay": request.membership.can_pay,
            "today": timezone.localdate(),
        },
    )


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    # A path on this site: "0" or "draft-²" would be resolved relative to this page.
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "/invoices/"


@login_required
@require_http_methods(["GET", "POST"])
def customer_switch(request: HttpRequest) -> HttpResponse:
    memberships = memberships_of(request.user)
    if not memberships:
        return redirect("contracts:no-customer")
    if request.method == "POST":
        raw = request.POST.get("customer", "")
        valid = raw.isascii() and raw.isdigit() and len(raw) <= 18  # not "²" or "٣"
        chosen = choose_customer(request, int(raw)) if valid else None
        if chosen is None:
            messages.error(request, _("Choose one of the customers listed."))
        else:
            messages.success(
                request,
                _("You are now acting for %(customer)s.") % {"customer": chosen.customer.name},
            )
            # Not redirect(): it would try a bare word such as "0" as a URL name (a 500).
            return HttpResponseRedirect(_safe_next(request))
    current = active_membership(request)
    return render(
        request,
        "contracts/customer_switch.html",
        {
            "memberships": memberships,
            "current_id": current.customer_id if current else None,
            "next": _safe_next(request),
        },
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_GET
def no_customer(request: HttpRequest) -> HttpResponse:
    if active_membership(request) is not None:
        return redirect("invoices:invoice-list")
    return render(request, "contracts/no_customer.html")


class ActivityFilterForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[("", gettext_lazy("Everything")), *activity.KINDS.items()],
        required=False,
        label=gettext_lazy("Show"),
    )
    date_from = forms.DateField(
        required=False, label=gettext_lazy("From"), widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label=gettext_lazy("To"), widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError(_("“From” is after “To”: swap the dates."))
        return cleaned


ACTIVITY_PAGE_SIZE = 25


@require_GET
@member_required()
def activity_list(request: HttpRequest) -> HttpResponse:
    """/account/activity/: what happened on the customer's account, in plain words.

    Every member may read it (it shows what their invoices already show). A filter that
    does not parse is named and ignored: the page then shows everything."""
    form = ActivityFilterForm(request.GET or None)
    chosen = form.cleaned_data if form.is_valid() else {}
    entries = activity.customer_activity(
        request.customer.pk,
        kind=chosen.get("kind") or "",
        date_from=chosen.get("date_from"),
        date_to=chosen.get("date_to"),
    )
    page = Paginator(entries, ACTIVITY_PAGE_SIZE).get_page(request.GET.get("page"))
    keep = request.GET.copy()
    keep.pop("page", None)
    return render(
        request,
        "contracts/activity.html",
        {
            "form": form,
            "page": page,
            "items": activity.describe(page.object_list),
            "page_query": keep.urlencode(),
        },
        status=400 if form.errors else 200,
    )


SAVED = gettext_lazy(
    "Billing details saved. Invoices issued from now on use them; invoices already "
    "issued keep the details they were issued with."
)


@require_http_methods(["GET", "POST"])
@member_required()
def billing_details(request: HttpRequest) -> HttpResponse:
    """Owners and billing members edit the details; viewers read them."""
    customer = request.customer
    can_edit = request.membership.can_pay
    form = BillingDetailsForm(customer=customer)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied(_("Your role can read the billing details but not change them."))
        form = BillingDetailsForm(request.POST, customer=customer)
        if form.is_valid():
            try:
                services.customer_update(
                    customer_id=customer.pk, changes=form.cleaned_data, actor=request.user
                )
            except ValidationError as exc:
                for field_name, errors in exc.message_dict.items():
                    form.add_error(field_name if field_name in form.fields else None, errors)
            else:
                messages.success(request, SAVED)
                return redirect("contracts:billing-details", permanent=False)
    return render(
        request,
        "contracts/billing_details.html",
        {
            "form": form,
            "can_edit": can_edit,
            "customer": customer,
            "country_name": country_name(customer.country),
            # The country has a row of its own, in words: not again as a code here.
            "address_lines": [
                line for line in customer.address_lines if line not in (customer.country, "")
            ],
            "history": selectors.billing_details_history(customer),
        },
        status=400 if form.errors else 200,
    )
