"""CSRF: every route that accepts a POST from a browser refuses one without a token.

The routes come from the URL configuration (through the authorisation matrix), so a
new form cannot skip this test. A route answers a tokenless POST with 403 (CSRF) or
405 (it changes nothing on POST); only the bearer-token API and the signed Stripe
webhook are exempt, and neither accepts a session in place of its own credential.
"""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.security.test_authz_matrix import EXCLUDED, MATRIX, all_routes

CSRF_EXEMPT = {
    "api:invoice-list": "bearer token, no cookies",
    "api:invoice-detail": "bearer token, no cookies",
    "api:invoice-pay": "bearer token, no cookies",
    "api:invoice-report": "bearer token, no cookies",
    "api:credit-note-list": "bearer token, no cookies",
    "api:credit-note-detail": "bearer token, no cookies",
    "api:statement": "bearer token, no cookies",
    "api:payment-method-list": "bearer token, no cookies",
    "api:billing-details": "bearer token, no cookies",
    "api:billing-details-update": "bearer token, no cookies",
    "api:schema": "read-only document",
    "api:docs": "read-only page",
    r"^api/(?P<rest>.*)$": "JSON 404",
    "stripe-webhook": "Stripe signature",
    "razorpay-webhook": "X-Razorpay-Signature",
}
EXTRA_URLS = {
    "": "/",
    "login": "/accounts/login/",
    "logout": "/accounts/logout/",
    "password_change": "/accounts/password_change/",
    "password_change_done": "/accounts/password_change/done/",
    "password_reset": "/accounts/password_reset/",
    "password_reset_done": "/accounts/password_reset/done/",
    "password_reset_confirm": "/accounts/reset/MQ/set-password/",
    "password_reset_complete": "/accounts/reset/done/",
    "admin": "/admin/login/",
    "api:schema": "/api/schema/",
    "api:docs": "/api/docs/",
    "stripe-webhook": "/stripe/",
    "razorpay-webhook": "/razorpay/",
    "set_language": "/i18n/setlang/",
}


def _url(route, world) -> str:
    if route in MATRIX:
        return MATRIX[route].url(world)
    return EXTRA_URLS[route]


def test_every_route_has_a_csrf_case():
    missing = all_routes() - MATRIX.keys() - EXTRA_URLS.keys()
    assert not missing, missing
    assert set(EXCLUDED) <= all_routes()


@pytest.mark.parametrize("route", sorted(all_routes() - CSRF_EXEMPT.keys()))
def test_post_without_token_is_refused(world, route):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner.user)
    response = client.post(_url(route, world), {"customer": world.customer.pk})
    assert response.status_code in (403, 405), (route, response.status_code)
    if response.status_code == 403:
        assert b"CSRF" in response.content, route


@pytest.mark.parametrize("route", sorted(CSRF_EXEMPT))
def test_exempt_routes_ignore_the_session(world, route):
    """A forged cross-site POST carries cookies, never the bearer token or signature."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner.user)
    response = client.post(_url(route, world), {})
    assert response.status_code in (400, 401, 403, 404, 405), (route, response.status_code)


def test_post_with_token_goes_through(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner.user)
    client.get("/account/customer/")
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(
        "/account/customer/",
        {"customer": world.customer.pk, "next": "/contracts/", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert response["Location"] == "/contracts/"


TEMPLATES = Path(settings.BASE_DIR) / "templates"


@pytest.mark.parametrize(
    "template",
    sorted(p for p in TEMPLATES.rglob("*.html") if "emails" not in p.parts),
    ids=lambda p: str(p.relative_to(TEMPLATES)),
)
def test_every_post_form_carries_the_token(template):
    text = template.read_text()
    for form in re.findall(r"<form\b[^>]*>.*?</form>", text, flags=re.S | re.I):
        opening = form.split(">", 1)[0]
        if re.search(r"method\s*=\s*[\"']?post", opening, flags=re.I):
            assert "{% csrf_token %}" in form, f"POST form without csrf_token in {template}"
