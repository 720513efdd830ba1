"""The account menu on every page, not only on the pages that act for a customer."""

from django.http import HttpRequest

from .context import active_membership


def account(request: HttpRequest) -> dict:
    """`account`: the membership the person acts through, or None (logged out, no customer).

    Views behind member_required have set it on the request already; other pages (errors,
    the pay link's pages, the customer switch) read it the same way, from the memberships
    the login backend loaded with the user, so no page pays a query for the header.
    """
    membership = getattr(request, "membership", None)
    if membership is None and hasattr(request, "user"):
        membership = active_membership(request)
    return {"account": membership}
