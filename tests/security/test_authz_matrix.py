"""Authorisation matrix, generated from the URL configuration.

Every route in config.urls is either a row of MATRIX or named in EXCLUDED with the
reason; a new URL with neither fails test_every_route_is_in_the_matrix. Each row is
requested, for objects of customer A, by an anonymous visitor, by the owner of
customer B and by a viewer of customer A, and must answer as designed: a login
redirect (or 401 for the API), 404 for another customer's object, 403 where the
viewer's role is not enough, and never customer A's data to someone outside A.
"""

import json
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver

from billing.api.models import ApiToken, WebhookAttempt, WebhookEndpoint
from billing.api.serializers import invoice_api_id
from billing.collections.models import InvoiceReport
from billing.invoices.links import pay_token
from billing.payments.models import Payment, PaymentMethod
from contracts.context import SESSION_KEY

LOGIN = "login redirect"
ACTORS = ("anonymous", "other_owner", "viewer")


@dataclass(frozen=True)
class Row:
    method: str
    url: object  # world -> path
    expect: dict  # actor -> LOGIN | status code
    data: object = None  # world -> POST data
    # The text of customer A's object that must never reach someone outside A.
    secret: object = field(default=lambda w: w.invoice.number)
    api: bool = False


MATRIX: dict[str, Row] = {
    "invoices:invoice-list": Row(
        "get",
        lambda w: "/invoices/",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 200},
    ),
    "invoices:invoice-export-csv": Row(
        "get",
        lambda w: "/invoices/export.csv",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 200},
    ),
    "invoices:invoice-download-zip": Row(
        "post",
        lambda w: "/invoices/download.zip",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        data=lambda w: {"numbers": w.invoice.number},
        # The refusal names the numbers that were asked for; what must not leak is the PDF.
        secret=lambda w: "%PDF",
    ),
    "invoices:invoice-detail": Row(
        "get",
        lambda w: f"/invoices/{w.invoice.number}/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        secret=lambda w: w.customer.name,
    ),
    "invoices:invoice-pdf": Row(
        "get",
        lambda w: f"/invoices/{w.invoice.number}/pdf/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        secret=lambda w: "%PDF",
    ),
    "invoices:invoice-xml": Row(
        "get",
        lambda w: f"/invoices/{w.invoice.number}/xml/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        secret=lambda w: "CrossIndustryInvoice",
    ),
    "payments:invoice-pay": Row(
        "post",
        lambda w: f"/invoices/{w.invoice.number}/pay/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {},
        secret=lambda w: w.customer.name,
    ),
    "collections:invoice-report": Row(
        "post",
        lambda w: f"/invoices/{w.invoice.number}/report/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {"reason": "other", "description": "Wrong."},
        secret=lambda w: w.customer.name,
    ),
    "payments:checkout-success": Row(
        "get",
        lambda w: f"/invoices/{w.invoice.number}/pay/done/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        secret=lambda w: w.customer.name,
    ),
    "payments:checkout-cancel": Row(
        "get",
        lambda w: f"/invoices/{w.invoice.number}/pay/cancelled/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        secret=lambda w: w.customer.name,
    ),
    # Refused before the payment is looked up (login, role, the invoice's customer).
    "payments:payment-confirm": Row(
        "post",
        lambda w: f"/invoices/{w.invoice.number}/payments/1/confirm/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {},
        secret=lambda w: w.customer.name,
    ),
    "payments:payment-confirmed": Row(
        "get",
        lambda w: f"/invoices/{w.invoice.number}/payments/1/confirmed/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        secret=lambda w: w.customer.name,
    ),
    "payments:payment-methods": Row(
        "get",
        lambda w: "/payment-methods/",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 403},
        secret=lambda w: w.method.last4,
    ),
    # Receipts: members of the invoice's customer (any role) or the pay link's holder.
    # Payment 1 is no receipt of this open invoice: the viewer, let in, finds none.
    "payments:payment-receipt": Row(
        "get",
        lambda w: f"/invoices/{w.invoice.number}/payments/1/receipt/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 404},
        secret=lambda w: w.customer.name,
    ),
    "payments:payment-receipt-pdf": Row(
        "get",
        lambda w: f"/invoices/{w.invoice.number}/payments/1/receipt.pdf",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 404},
        secret=lambda w: "%PDF",
    ),
    "payments:payment-method-remove": Row(
        "get",
        lambda w: f"/payment-methods/{w.method.pk}/remove/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        secret=lambda w: w.method.last4,
    ),
    # Choosing the contract's payment method: the viewer may see it, not change it; another
    # customer's contract is 404 (and the method never reaches them).
    "payments:contract-payment-method": Row(
        "post",
        lambda w: f"/contracts/{w.contract.pk}/payment-method/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {"method": str(w.method.pk)},
        secret=lambda w: w.method.last4,
    ),
    # The PDF of the pay link's invoice: the signed token is the credential.
    "invoices:invoice-pdf-for-link": Row(
        "get",
        lambda w: f"/invoices/{w.invoice.number}/pay/pdf/?token=forged",
        {"anonymous": 404, "other_owner": 404, "viewer": 404},
        secret=lambda w: "%PDF",
    ),
    # Capability URLs: the signed token is the credential (like Stripe's checkout URL).
    # A forged token is refused to everybody.
    "payments:sandbox-checkout": Row(
        "get",
        lambda w: "/sandbox/checkout/forged-token/",
        {"anonymous": 404, "other_owner": 404, "viewer": 404},
    ),
    "payments:sandbox-confirm": Row(
        "get",
        lambda w: "/sandbox/confirm/forged-token/",
        {"anonymous": 404, "other_owner": 404, "viewer": 404},
    ),
    "payments:sandbox-setup": Row(
        "get",
        lambda w: "/sandbox/setup/forged-token/",
        {"anonymous": 404, "other_owner": 404, "viewer": 404},
    ),
    "contracts:contract-list": Row(
        "get",
        lambda w: "/contracts/",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 200},
        secret=lambda w: str(w.block.prefix),
    ),
    "contracts:contract-detail": Row(
        "get",
        lambda w: f"/contracts/{w.contract.pk}/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        secret=lambda w: str(w.block.prefix),
    ),
    "contracts:customer-switch": Row(
        "post",
        lambda w: "/account/customer/",
        {"anonymous": LOGIN, "other_owner": 400, "viewer": 302},
        data=lambda w: {"customer": str(w.customer.pk), "next": "/invoices/"},
        secret=lambda w: w.customer.name,
    ),
    "invoices:credit-note-detail": Row(
        "get",
        lambda w: f"/credit-notes/{w.credit_note.number}/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        secret=lambda w: w.customer.name,
    ),
    "invoices:credit-note-pdf": Row(
        "get",
        lambda w: f"/credit-notes/{w.credit_note.number}/pdf/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        secret=lambda w: "%PDF",
    ),
    "invoices:credit-note-xml": Row(
        "get",
        lambda w: f"/credit-notes/{w.credit_note.number}/xml/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 200},
        secret=lambda w: "CrossIndustryInvoice",
    ),
    # Statements are of the person's own customer: B's owner gets B's, never A's lines.
    "payments:statement": Row(
        "get",
        lambda w: "/statements/?currency=EUR",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 200},
    ),
    "payments:statement-csv": Row(
        "get",
        lambda w: "/statements/statement.csv?currency=EUR",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 200},
    ),
    "payments:statement-pdf": Row(
        "get",
        lambda w: "/statements/statement.pdf?currency=EUR",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 200},
        secret=lambda w: w.customer.name,
    ),
    "contracts:activity": Row(
        "get",
        lambda w: "/account/activity/",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 200},
    ),
    # Acting for their own customer: B's owner sees B's details, never A's. A viewer's
    # POST is refused (tests/contracts/test_billing_details.py).
    "contracts:billing-details": Row(
        "get",
        lambda w: "/account/billing/",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 200},
        secret=lambda w: w.customer.name,
    ),
    "contracts:no-customer": Row(
        "get",
        lambda w: "/account/no-customer/",
        {"anonymous": LOGIN, "other_owner": 302, "viewer": 302},
    ),
    "api:tokens": Row(
        "get",
        lambda w: "/settings/tokens/",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 403},
        secret=lambda w: w.token.name,
    ),
    "api:token-revoke": Row(
        "post",
        lambda w: f"/settings/tokens/{w.token.pk}/revoke/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {},
        secret=lambda w: w.token.name,
    ),
    # Webhook endpoints: owners and billing members, like the tokens page.
    "api:webhooks": Row(
        "get",
        lambda w: "/settings/webhooks/",
        {"anonymous": LOGIN, "other_owner": 200, "viewer": 403},
        secret=lambda w: w.webhook.url,
    ),
    "api:webhook-detail": Row(
        "get",
        lambda w: f"/settings/webhooks/{w.webhook.pk}/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        secret=lambda w: w.webhook.url,
    ),
    "api:webhook-secret": Row(
        "post",
        lambda w: f"/settings/webhooks/{w.webhook.pk}/secret/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {},
        secret=lambda w: w.webhook.secret,
    ),
    "api:webhook-enable": Row(
        "post",
        lambda w: f"/settings/webhooks/{w.webhook.pk}/enable/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {},
        secret=lambda w: w.webhook.url,
    ),
    "api:webhook-disable": Row(
        "post",
        lambda w: f"/settings/webhooks/{w.webhook.pk}/disable/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {},
        secret=lambda w: w.webhook.url,
    ),
    "api:webhook-delete": Row(
        "post",
        lambda w: f"/settings/webhooks/{w.webhook.pk}/delete/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {},
        secret=lambda w: w.webhook.url,
    ),
    "api:webhook-replay": Row(
        "post",
        lambda w: f"/settings/webhooks/{w.webhook.pk}/deliveries/{w.delivery.pk}/replay/",
        {"anonymous": LOGIN, "other_owner": 404, "viewer": 403},
        data=lambda w: {},
        secret=lambda w: w.delivery.event_id,
    ),
    # The API authenticates by bearer token only: a session (the viewer's) is not enough.
    "api:invoice-list": Row(
        "get",
        lambda w: "/api/invoices/",
        {"anonymous": 401, "other_owner": 200, "viewer": 401},
        api=True,
    ),
    "api:invoice-detail": Row(
        "get",
        lambda w: f"/api/invoices/{invoice_api_id(w.invoice)}",
        {"anonymous": 401, "other_owner": 404, "viewer": 401},
        api=True,
    ),
    "api:invoice-pay": Row(
        "post",
        lambda w: f"/api/invoices/{invoice_api_id(w.invoice)}/pay",
        {"anonymous": 401, "other_owner": 404, "viewer": 401},
        data=lambda w: {"payment_method": "pm_1"},
        api=True,
    ),
    "api:invoice-report": Row(
        "post",
        lambda w: f"/api/invoices/{invoice_api_id(w.invoice)}/report",
        {"anonymous": 401, "other_owner": 404, "viewer": 401},
        data=lambda w: {"reason": "other", "description": "Wrong."},
        api=True,
    ),
    "api:credit-note-list": Row(
        "get",
        lambda w: "/api/credit_notes",
        {"anonymous": 401, "other_owner": 200, "viewer": 401},
        secret=lambda w: w.credit_note.number,
        api=True,
    ),
    "api:credit-note-detail": Row(
        "get",
        lambda w: f"/api/credit_notes/cn_{w.credit_note.pk}",
        {"anonymous": 401, "other_owner": 404, "viewer": 401},
        secret=lambda w: w.credit_note.number,
        api=True,
    ),
    "api:statement": Row(
        "get",
        lambda w: "/api/statement?currency=eur",
        {"anonymous": 401, "other_owner": 200, "viewer": 401},
        api=True,
    ),
    # Bravo's token lists Bravo's methods only: Alpha's card never appears.
    "api:payment-method-list": Row(
        "get",
        lambda w: "/api/payment_methods",
        {"anonymous": 401, "other_owner": 200, "viewer": 401},
        secret=lambda w: w.method.provider_id,
        api=True,
    ),
    "api:billing-details": Row(
        "get",
        lambda w: "/api/billing_details",
        {"anonymous": 401, "other_owner": 200, "viewer": 401},
        api=True,
    ),
    "api:billing-details-update": Row(
        "post",
        lambda w: "/api/billing_details",
        {"anonymous": 401, "other_owner": 200, "viewer": 401},
        data=lambda w: {"purchase_order_reference": "PO-1"},
        api=True,
    ),
    "api:activity": Row(
        "get",
        lambda w: "/api/activity",
        {"anonymous": 401, "other_owner": 200, "viewer": 401},
        api=True,
    ),
    "api:webhook-endpoint-list": Row(
        "get",
        lambda w: "/api/webhook_endpoints",
        {"anonymous": 401, "other_owner": 200, "viewer": 401},
        secret=lambda w: w.webhook.url,
        api=True,
    ),
    # Unknown API paths answer a JSON 404 to everybody, before any authentication.
    r"^api/(?P<rest>.*)$": Row(
        "get",
        lambda w: f"/api/customers/cus_{w.customer.pk}",
        {"anonymous": 404, "other_owner": 404, "viewer": 404},
        api=True,
    ),
}

EXCLUDED = {
    # The root only redirects to /invoices/ (which is in the matrix); it shows nothing.
    "": "redirect to /invoices/, no content",
    "admin": "staff only: test_admin_refuses_customers below",
    "stripe-webhook": "no session; Stripe signature (billing/payments/test_webhooks_stripe.py)",
    "razorpay-webhook": "no session; Razorpay signature (payments/test_webhooks_razorpay.py)",
    "api:schema": "public OpenAPI document without customer data",
    "api:docs": "public Swagger UI of that document, no customer data",
    # django.contrib.auth.urls: the person's own account, no customer objects.
    "login": "public log-in form (tests/security/test_login_throttle.py)",
    "logout": "ends the own session (POST + CSRF, tests/security/test_csrf.py)",
    "password_change": "own account; login required (test_password_change_needs_login)",
    "password_change_done": "own account; login required (test_password_change_needs_login)",
    "password_reset": "public form; answers the same for every e-mail address",
    "password_reset_done": "static confirmation page",
    "password_reset_confirm": "capability URL: signed one-time token from the e-mail",
    "password_reset_complete": "static confirmation page",
    "set_language": "sets the visitor's own language cookie, no customer data (tests/test_i18n.py)",
}


def _walk(patterns, namespace=None, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = p.namespace or namespace
            if p.namespace == "admin":
                yield "admin"
                continue
            yield from _walk(p.url_patterns, ns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            if p.name:
                yield f"{namespace}:{p.name}" if namespace else p.name
            else:
                yield str(p.pattern)


def all_routes() -> set[str]:
    return set(_walk(get_resolver().url_patterns))


def test_every_route_is_in_the_matrix():
    routes = all_routes()
    missing = sorted(routes - MATRIX.keys() - EXCLUDED.keys())
    assert not missing, f"Add these routes to MATRIX or EXCLUDED (with a reason): {missing}"
    stale = sorted((MATRIX.keys() | EXCLUDED.keys()) - routes)
    assert not stale, f"These matrix entries name no route any more: {stale}"


def _client_for(client, world, actor):
    if actor == "other_owner":
        client.force_login(world.other.user)
    elif actor == "viewer":
        client.force_login(world.viewer.user)
    return client


def _request(client, world, row: Row, actor: str):
    url = row.url(world)
    headers = {}
    if row.api and actor == "other_owner":
        headers["Authorization"] = f"Bearer {world.other_token_secret}"
    data = row.data(world) if row.data else None
    if row.api and row.method == "post":
        return client.post(url, json.dumps(data), content_type="application/json", headers=headers)
    if row.method == "post":
        return client.post(url, data or {}, headers=headers)
    return client.get(url, headers=headers)


def _body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("route", sorted(MATRIX))
def test_matrix(client, world, route, actor):
    row = MATRIX[route]
    client = _client_for(client, world, actor)
    payments_before = Payment.objects.count()
    reports_before = InvoiceReport.objects.count()
    response = _request(client, world, row, actor)
    body = _body(response)
    expected = row.expect[actor]
    if expected == LOGIN:
        assert response.status_code == 302, (route, response.status_code)
        assert response["Location"].startswith(settings.LOGIN_URL), response["Location"]
    else:
        assert response.status_code == expected, (route, actor, response.status_code, body[:300])
    if actor != "viewer":
        assert row.secret(world) not in body, (route, actor)
    if actor != "viewer" or expected == 403:
        # Refused requests change nothing.
        assert Payment.objects.count() == payments_before
        assert InvoiceReport.objects.count() == reports_before
        assert ApiToken.objects.get(pk=world.token.pk).revoked_at is None
        assert PaymentMethod.objects.filter(pk=world.method.pk).exists()
        assert WebhookEndpoint.objects.filter(pk=world.webhook.pk, enabled=True).exists()
        assert not WebhookAttempt.objects.exists()
    if route == "contracts:customer-switch" and actor == "other_owner":
        assert client.session.get(SESSION_KEY) != world.customer.pk


def test_pay_link_token_is_bound_to_its_invoice(client, world):
    """The PDF's pay link for Bravo's invoice cannot open Alpha's invoice."""
    token = pay_token(world.other_invoice)
    response = client.get(f"/invoices/{world.invoice.number}/pay/", {"token": token})
    assert response.status_code == 404
    assert world.customer.name not in response.content.decode()
    response = client.get(f"/invoices/{world.invoice.number}/pay/", {"token": token + "x"})
    assert response.status_code == 404


def test_password_change_needs_login(client):
    response = client.get("/accounts/password_change/")
    assert response.status_code == 302
    assert response["Location"].startswith(settings.LOGIN_URL)


def test_admin_refuses_customers(client, world):
    client.force_login(world.owner.user)
    for path in (
        "/admin/",
        "/admin/invoices/invoice/",
        f"/admin/invoices/invoice/{world.invoice.pk}/change/",
    ):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/admin/login/"), path


@pytest.mark.parametrize("path", ["/stripe/", "/razorpay/"])
def test_unsigned_webhook_is_refused(client, db, path):
    response = client.post(path, "{}", content_type="application/json")
    assert response.status_code in (400, 403)
