"""Which customer a logged-in person is acting for.

A user may belong to several customers; the chosen one is kept in the session.
Every customer-facing view gets it through `member_required`, so scoping to one
customer is decided in one place.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext_lazy as _

from .models import Membership

SESSION_KEY = "active_customer_id"


def by_customer_name(memberships) -> list[Membership]:
    """Memberships in the order people see their customers (and the first is the default)."""
    return sorted(memberships, key=lambda m: (m.customer.name.casefold(), m.customer_id))


def memberships_of(user) -> list[Membership]:
    """The user's memberships with their customers, by customer name.

    contracts.backends.MemberBackend loads them with the user; a user object from
    elsewhere (another backend, a test) gets them from one query.
    """
    loaded = getattr(user, "loaded_memberships", None)
    if loaded is None:
        loaded = by_customer_name(Membership.objects.select_related("customer").filter(user=user))
    return loaded


def active_membership(request: HttpRequest) -> Membership | None:
    """The membership the user acts through: the one chosen in the session, else their first."""
    if not request.user.is_authenticated:
        return None
    memberships = memberships_of(request.user)
    chosen = request.session.get(SESSION_KEY)
    found = next((m for m in memberships if m.customer_id == chosen), None) if chosen else None
    return found or (memberships[0] if memberships else None)


def choose_customer(request: HttpRequest, customer_id: int) -> Membership | None:
    membership = next(
        (m for m in memberships_of(request.user) if m.customer_id == customer_id), None
    )
    if membership:
        request.session[SESSION_KEY] = membership.customer_id
    return membership


def member_required(*, paying: bool = False) -> Callable:
    """Login required; sets request.membership and request.customer.

    With paying=True, viewers get 403: only owners and billing members pay, manage
    payment methods and API tokens. Every member may read and download documents.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            membership = active_membership(request)
            if membership is None:
                return redirect("contracts:no-customer")
            if paying and not membership.can_pay:
                raise PermissionDenied(_("Your role can view invoices but not pay them."))
            request.membership = membership
            request.customer = membership.customer
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
