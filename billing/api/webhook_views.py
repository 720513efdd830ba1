"""/settings/webhooks/: owners and billing members manage the customer's webhook endpoints.

Like /settings/tokens/, the pages are for the paying roles: viewers get 403. Another
customer's endpoint or delivery is a 404. Every change goes through billing.api.webhooks.
"""

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from contracts.context import member_required
from core.errors import DomainError

from . import selectors, webhooks
from .models import WebhookDelivery, WebhookEndpoint, WebhookEventType


class EndpointForm(forms.Form):
    url = forms.CharField(
        max_length=2000,
        label=gettext_lazy("Endpoint URL"),
        help_text=gettext_lazy("Where we POST the events, e.g. https://erp.example.com/hooks."),
        widget=forms.URLInput(attrs={"inputmode": "url"}),
    )
    description = forms.CharField(
        max_length=200, required=False, label=gettext_lazy("Description (optional)")
    )
    events = forms.MultipleChoiceField(
        # Lazy: the event's name is an identifier, its explanation in the page's language.
        choices=[
            (value, format_lazy("{}: {}", value, label))
            for value, label in WebhookEventType.choices
        ],
        widget=forms.CheckboxSelectMultiple,
        label=gettext_lazy("Events to send"),
    )


@member_required(paying=True)
@require_http_methods(["GET", "POST"])
def webhook_list(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            created = webhooks.endpoint_create(
                membership=request.membership,
                url=form.cleaned_data["url"],
                events=form.cleaned_data["events"],
                description=form.cleaned_data["description"],
                actor=request.user,
            )
        except DomainError as exc:
            form.add_error("url" if exc.code == "url" else None, exc.message)
        else:
            form = EndpointForm()
    return render(
        request,
        "billing/api/webhooks.html",
        {
            "form": form,
            "endpoints": selectors.webhook_endpoints(request.customer.pk),
            "created": created,
            "event_types": WebhookEventType.choices,
            "signature_header": webhooks.SIGNATURE_HEADER,
        },
        status=400 if form.errors else 200,
    )


def _endpoint(request: HttpRequest, pk: int) -> WebhookEndpoint:
    try:
        return selectors.webhook_endpoint(request.customer.pk, pk)
    except WebhookEndpoint.DoesNotExist:
        raise Http404("No such endpoint.") from None


@member_required(paying=True)
@require_http_methods(["GET"])
def webhook_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail(request, _endpoint(request, pk))


def _detail(request: HttpRequest, endpoint: WebhookEndpoint, secret: str | None = None):
    return render(
        request,
        "billing/api/webhook_detail.html",
        {
            "endpoint": endpoint,
            "deliveries": selectors.recent_deliveries(endpoint),
            "secret": secret,
            "signature_header": webhooks.SIGNATURE_HEADER,
        },
    )


@member_required(paying=True)
@require_POST
def webhook_secret(request: HttpRequest, pk: int) -> HttpResponse:
    """Shows the signing secret (a POST, so it is never in a URL, a log or a prefetch)."""
    try:
        secret = webhooks.endpoint_reveal_secret(
            endpoint_id=pk, membership=request.membership, actor=request.user
        )
    except WebhookEndpoint.DoesNotExist:
        raise Http404("No such endpoint.") from None
    response = _detail(request, _endpoint(request, pk), secret=secret)
    response["Cache-Control"] = "no-store"
    return response


@member_required(paying=True)
@require_POST
def webhook_enable(request: HttpRequest, pk: int) -> HttpResponse:
    return _set_enabled(request, pk, True)


@member_required(paying=True)
@require_POST
def webhook_disable(request: HttpRequest, pk: int) -> HttpResponse:
    return _set_enabled(request, pk, False)


def _set_enabled(request: HttpRequest, pk: int, enabled: bool) -> HttpResponse:
    try:
        endpoint = webhooks.endpoint_set_enabled(
            endpoint_id=pk, membership=request.membership, enabled=enabled, actor=request.user
        )
    except WebhookEndpoint.DoesNotExist:
        raise Http404("No such endpoint.") from None
    if enabled:
        messages.success(request, _("Endpoint %(url)s enabled.") % {"url": endpoint.url})
    else:
        messages.success(request, _("Endpoint %(url)s disabled.") % {"url": endpoint.url})
    return redirect("api:webhook-detail", pk=pk)


@member_required(paying=True)
@require_POST
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        webhooks.endpoint_delete(endpoint_id=pk, membership=request.membership, actor=request.user)
    except WebhookEndpoint.DoesNotExist:
        raise Http404("No such endpoint.") from None
    messages.success(request, _("Endpoint deleted."))
    return redirect("api:webhooks")


@member_required(paying=True)
@require_POST
def webhook_replay(request: HttpRequest, pk: int, delivery_pk: int) -> HttpResponse:
    try:
        delivery = webhooks.delivery_replay(
            endpoint_id=pk,
            delivery_id=delivery_pk,
            membership=request.membership,
            actor=request.user,
        )
    except WebhookDelivery.DoesNotExist:
        raise Http404("No such delivery.") from None
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("api:webhook-detail", pk=pk)
    messages.success(
        request,
        _("Event %(id)s is being sent again; its attempts are listed below.")
        % {"id": delivery.event_id},
    )
    return redirect("api:webhook-detail", pk=pk)
