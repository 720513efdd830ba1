"""Whole rendered pages of the invoice list, cached per browser and per user.

With its body cached (billing.invoices.views.invoice_list) the list page still spent more time
rendering the layout around the body (site header, CSRF tokens, forms) than on anything
else. Coming back to the list (paging back, returning from an invoice, reloading) is the
commonest view in the portal, so the finished HTML is kept in the customer's list cache
(billing.invoices.selectors) and served from one cache round trip.

A stored page is right only while everything it shows is unchanged, so its key names
all of it:
- the full path (filters, sort, page size, page) and today's date (Overdue badges);
- the user (id and the name in the header), the customer (id and name) and the role
  (Pay online, the Payment methods link);
- the browser's CSRF secret (the page's forms carry tokens made from it; logging in
  rotates it), so a page is only ever served to the browser it was made for;
and, as every entry of the list cache, the deployed code (config.release) and the
customer's invoice-list version, which every invoice change replaces: a page stored
under an older version is not served. Pages with pending flash messages are neither
served from nor stored in the cache: they show the messages.
"""

import hashlib
import logging
from collections.abc import Callable
from functools import wraps

from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .selectors import list_cache_lookup, list_cache_store

logger = logging.getLogger(__name__)


def _page_key(request: HttpRequest) -> str | None:
    csrf_secret = request.META.get("CSRF_COOKIE")
    if not csrf_secret or len(get_messages(request)):
        return None  # a first visit needs its CSRF cookie set; messages must be shown
    user, customer, membership = request.user, request.customer, request.membership
    material = "\n".join(
        (
            request.get_full_path(),
            str(timezone.localdate()),
            str(user.pk),
            user.get_username(),
            str(customer.pk),
            customer.name,
            membership.role,
            csrf_secret,
        )
    )
    return "page:" + hashlib.blake2b(material.encode(), digest_size=16).hexdigest()


def per_browser(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve a member's repeat GET of `view` from the cache (after member_required)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        key = _page_key(request)
        if key is None:
            return view(request, *args, **kwargs)
        customer_id = request.customer.pk
        try:
            content, version = list_cache_lookup(customer_id, key)
        except Exception:
            logger.exception("page cache unavailable")
            return view(request, *args, **kwargs)
        if content is not None:
            return HttpResponse(content)
        response = view(request, *args, **kwargs)
        if response.status_code == 200 and not response.streaming:
            try:
                list_cache_store(customer_id, key, version, response.content)
            except Exception:
                logger.exception("page cache unavailable")
        return response

    return wrapped
