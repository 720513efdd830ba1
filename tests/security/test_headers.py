import re
from pathlib import Path

import pytest
from django.conf import settings

from tests.security.prod import production_settings

TEMPLATES = Path(settings.BASE_DIR) / "templates"
# E-mails are read in mail clients, never served by the portal under its CSP.
# Templates a browser renders under our CSP. E-mails and the PDF (rendered by WeasyPrint,
# never served as a page) are not subject to it.
PAGE_TEMPLATES = sorted(
    p
    for p in TEMPLATES.rglob("*.html")
    if "emails" not in p.parts and p.relative_to(TEMPLATES).parts[:2] != ("billing", "pdf")
)


def _csp(response) -> dict[str, list[str]]:
    policy = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *sources = part.split()
        policy[name] = sources
    return policy


@pytest.mark.parametrize(
    "path", ["/accounts/login/", "/invoices/", "/static/js/portal.js", "/api/invoices/"]
)
def test_security_headers_on_every_kind_of_response(client, owner, path):
    client.force_login(owner)
    response = client.get(path)
    assert response.status_code in (200, 401), response.status_code
    policy = _csp(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    # Pay online answers 303 to Stripe Checkout; Chromium applies form-action to it.
    assert policy["form-action"] == ["'self'", "https://checkout.stripe.com"]
    header = response["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


def test_hsts_and_secure_cookies_with_production_values(client, owner, settings):
    prod = production_settings(
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "CSRF_COOKIE_HTTPONLY",
    )
    for name, value in prod.items():
        setattr(settings, name, value)
    response = client.get("/accounts/login/", secure=True)
    assert response["Strict-Transport-Security"] == ("max-age=31536000; includeSubDomains; preload")
    csrf = response.cookies[settings.CSRF_COOKIE_NAME]
    assert csrf["secure"] and csrf["httponly"] and csrf["samesite"] == "Lax"
    response = client.post(
        "/accounts/login/", {"username": owner.username, "password": "pw"}, secure=True
    )
    assert response.status_code == 302
    session = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"


@pytest.mark.parametrize("template", PAGE_TEMPLATES, ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_no_inline_script(template):
    text = template.read_text()
    for tag in re.findall(r"<script\b[^>]*>", text, flags=re.I):
        assert "src=" in tag, f"inline <script> in {template}: move it to static/js"
    handlers = re.findall(r"<[^>]*\son[a-z]+\s*=", text, flags=re.I)
    assert not handlers, f"event-handler attribute in {template}: {handlers}"
    assert "javascript:" not in text.lower()


@pytest.mark.parametrize("template", PAGE_TEMPLATES, ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_no_style_attributes(template):
    name = str(template.relative_to(TEMPLATES))
    found = re.findall(r"<[^>]*\sstyle\s*=", template.read_text(), flags=re.I)
    assert not found, f"style attribute in {name}: blocked by style-src 'self'"
    assert "<style" not in template.read_text().lower(), name


def test_portal_js_needs_no_eval():
    text = (Path(settings.BASE_DIR) / "static" / "js" / "portal.js").read_text()
    assert "eval(" not in text and "new Function" not in text
