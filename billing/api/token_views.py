"""/settings/tokens/: owners and billing members create, see and revoke API tokens."""

import datetime

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from billing.api.models import SCOPE_ALLOWS, ApiScope, ApiToken
from contracts.context import member_required
from core.errors import DomainError

from .tokens import token_create, token_revoke


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, label=_("Name"), help_text=_("What uses it, e.g. ERP sync.")
    )
    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple, label=_("Scopes")
    )
    expires_on = forms.DateField(
        required=False,
        label=_("Expires on (optional)"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean_expires_on(self):
        value = self.cleaned_data["expires_on"]
        if value and value <= timezone.localdate():
            raise forms.ValidationError(_("Choose a date after today."))
        return value


@member_required(paying=True)
@require_http_methods(["GET", "POST"])
def token_list(request):
    form = TokenForm(request.POST or None)
    secret = None
    if request.method == "POST" and form.is_valid():
        expires_on = form.cleaned_data["expires_on"]
        expires_at = (
            datetime.datetime.combine(expires_on, datetime.time(), tzinfo=datetime.UTC)
            if expires_on
            else None
        )
        try:
            token, secret = token_create(
                membership=request.membership,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=expires_at,
                actor=request.user,
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                gettext("Token “%(name)s” created; copy it now, it is shown once.")
                % {"name": token.name},
            )
            form = TokenForm()
    tokens = ApiToken.objects.filter(customer=request.customer).select_related("user")
    return render(
        request,
        "billing/api/tokens.html",
        {
            "form": form,
            "tokens": tokens,
            "secret": secret,
            "now": timezone.now(),
            "scopes": list(SCOPE_ALLOWS.items()),
        },
    )


@member_required(paying=True)
@require_POST
def token_revoke_view(request, pk: int):
    try:
        token = token_revoke(token_id=pk, membership=request.membership, actor=request.user)
    except ApiToken.DoesNotExist:
        raise Http404("No such token.") from None
    messages.success(request, gettext("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("api:tokens")
