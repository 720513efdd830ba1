"""No 500s: every form field, query parameter, path segment and API parameter gets
Unicode digits, NUL bytes, lone surrogates, huge numbers and huge or deeply nested
bodies, and the portal answers each with a 4xx (or the page), never a server error.

Form bodies are sent raw, so invalid UTF-8 (a surrogate's bytes, %ED%A0%80) arrives as
a browser or a script could send it; JSON bodies carry "\\ud800" escapes.
"""

import json
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from billing.api.models import ApiScope
from billing.api.serializers import invoice_api_id
from billing.api.tokens import token_create
from billing.invoices.links import pay_token
from billing.payments import services as payments
from billing.payments.models import PaymentKind
from billing.payments.providers import sandbox
from tests.factories import UserFactory, make_invoice
from tests.fixtures.stripe.helpers import WEBHOOK_SECRET, sign

pytestmark = pytest.mark.django_db

# Text values (already decoded): what a parameter may hold after Django decoded it.
TEXT = [
    "²",
    "٣",
    "draft-²",
    "in_²",
    "\x00",
    "1\x00",
    "99999999999999999999999",
    "-1",
    "0",
    "",
    " ",
    "\U0001d7d9",
    "../../etc/passwd",
    "x" * 5000,
]
# Raw percent-encoded bytes for form bodies and query strings: a lone surrogate's UTF-8
# bytes, a stray continuation byte, an overlong NUL.
RAW = ["%ED%A0%80", "%80", "%C0%80", "%00", "%C2%B2"]
# JSON values for API bodies.
JSON_VALUES = ["\ud800", "\udfff", "a\x00b", "²", "in_²", 1e308, -1, True, None, [], {}, "x" * 5000]
BIG = 2_621_440 + 1  # one byte over Django's DATA_UPLOAD_MAX_MEMORY_SIZE


def _encode(value: str) -> str:
    return quote(value, safe="")


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET


@pytest.fixture
def owner_client(world):
    client = Client(raise_request_exception=False)
    client.force_login(world.owner.user)
    return client


@pytest.fixture
def checkout_tokens(world, owner_client):
    """Genuine sandbox tokens so the fuzzed fields reach the views behind them."""
    invoice = make_invoice(customer=world.customer)
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    provider = sandbox.SandboxProvider()
    checkout = provider.checkout_create(
        payment=payment,
        invoice=invoice,
        customer_ref="",
        success_url="http://testserver/ok",
        cancel_url="http://testserver/no",
    )
    setup = owner_client.post("/payment-methods/", {"action": "add"})["Location"]
    confirm = provider.payment_confirmation(payment=payment, return_url="http://testserver/r")
    return {"checkout": checkout.url, "setup": setup, "confirm": confirm.action_url}


def _failures(responses) -> list[str]:
    return [f"{label} -> {r.status_code}" for label, r in responses if r.status_code >= 500]


def _values() -> list[str]:
    return [_encode(v) for v in TEXT] + RAW


def test_page_query_parameters(world, owner_client):
    number = world.invoice.number
    pages = {
        "/invoices/": ["status", "q", "date_from", "date_to", "sort", "page", "per_page", "x"],
        "/invoices/export.csv": ["status", "q", "date_from", "date_to", "sort"],
        f"/invoices/{number}/": ["x"],
        f"/invoices/{number}/pay/": ["token"],
        f"/invoices/{number}/pay/done/": ["token"],
        f"/invoices/{number}/pay/cancelled/": ["token"],
        "/payment-methods/": ["added"],
        "/account/customer/": ["next"],
        "/accounts/login/": ["next"],
        "/contracts/": ["x"],
        "/settings/tokens/": ["x"],
    }
    responses = [
        (f"GET {page}?{name}={value[:40]}", owner_client.get(f"{page}?{name}={value}"))
        for page, names in pages.items()
        for name in names
        for value in _values()
    ]
    assert _failures(responses) == []


def test_path_segments(world, owner_client):
    number = world.invoice.number
    templates = [
        "/invoices/{}/",
        "/invoices/draft-{}/",
        "/invoices/{}/pdf/",
        "/invoices/draft-{}/pdf/",
        "/invoices/{}/pay/",
        "/invoices/{}/pay/done/",
        "/sandbox/checkout/{}/",
        "/sandbox/setup/{}/",
        "/sandbox/confirm/{}/",
        "/accounts/reset/{}/set-password/",
        "/accounts/reset/MQ/{}/",
        f"/invoices/{number}/payments/{{}}/confirmed/",
        "/api/invoices/{}/",
        "/api/invoices/{}",
        "/api/invoices/in_{}/",
        "/api/{}",
    ]
    responses = []
    for template in templates:
        for value in [v for v in _values() if v and v not in ("%2F", ".")]:
            url = template.format(value)
            responses.append((f"GET {url[:60]}", owner_client.get(url)))
    assert _failures(responses) == []


def _post_raw(client, url: str, fields: dict[str, str]):
    body = "&".join(f"{k}={v}" for k, v in fields.items())
    return client.generic("POST", url, body, content_type="application/x-www-form-urlencoded")


def test_form_fields(world, owner_client, checkout_tokens):
    number = world.invoice.number
    token = _encode(pay_token(world.invoice))
    forms = {
        "/invoices/download.zip": {"numbers": None},
        f"/invoices/{number}/pay/": {"payment_method": None, "token": None},
        f"/invoices/{number}/pay/?token={token}": {"token": token, "payment_method": None},
        "/payment-methods/": {"action": None, "method": None},
        "/payment-methods/#default": {"action": "default", "method": None},
        "/payment-methods/#remove": {"action": "remove", "method": None},
        "/account/customer/": {"customer": None, "next": None},
        "/settings/tokens/": {"name": None, "scopes": None, "expires_on": None},
        checkout_tokens["checkout"]: {"card": None, "saved": None, "action": None},
        checkout_tokens["setup"]: {"card": None},
        checkout_tokens["confirm"]: {"action": None},
        f"/invoices/{number}/payments/1/confirm/": {"x": None},
    }
    responses = []
    for url, fields in forms.items():
        for name, fixed in fields.items():
            if fixed is not None:
                continue
            for value in _values():
                data = {k: (v if v is not None else "1") for k, v in fields.items()}
                data[name] = value
                responses.append(
                    (f"POST {url} {name}={value[:40]}", _post_raw(owner_client, url, data))
                )
    assert _failures(responses) == []


def test_anonymous_forms(db):
    client = Client(raise_request_exception=False)
    forms = {
        "/accounts/login/": ["username", "password", "next"],
        "/admin/login/": ["username", "password"],
        "/accounts/password_reset/": ["email"],
    }
    responses = []
    for url, names in forms.items():
        for name in names:
            for value in _values():
                data = {n: "x" for n in names} | {name: value}
                responses.append((f"POST {url} {name}={value[:40]}", _post_raw(client, url, data)))
    assert _failures(responses) == []


def _api(client, world):
    return {"HTTP_AUTHORIZATION": f"Bearer {world.token_secret}"}


@pytest.fixture
def every_scope(world):
    _, secret = token_create(
        membership=world.owner,
        name="fuzz",
        scopes=list(ApiScope.values),
        expires_at=None,
        actor="t",
    )
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def test_api_report_bodies(world, every_scope):
    client = Client(raise_request_exception=False)
    url = f"/api/invoices/{invoice_api_id(world.invoice)}/report"
    bodies = []
    for value in JSON_VALUES:
        for name in ("reason", "description", "expected_correction"):
            bodies.append(json.dumps({"reason": "other", "description": "d", name: value}))
    bodies += ["[" * 5000 + "]" * 5000, '{"reason": "other", "description": "\\ud800"}', "null"]
    responses = [
        (
            f"POST report {body[:60]}",
            client.post(url, body, content_type="application/json", **every_scope),
        )
        for body in bodies
    ]
    assert _failures(responses) == []
    assert all(r["Content-Type"] == "application/json" for _, r in responses)


def test_report_form_fields(world, owner_client):
    url = f"/invoices/{world.invoice.number}/report/"
    responses = []
    for name in ("reason", "description", "expected_correction"):
        for value in _values():
            data = {"reason": "other", "description": "d", "expected_correction": ""}
            data[name] = value
            responses.append(
                (f"POST {url} {name}={value[:30]}", _post_raw(owner_client, url, data))
            )
    assert _failures(responses) == []


def test_api_query_parameters(world):
    client = Client(raise_request_exception=False)
    names = ["limit", "starting_after", "ending_before", "status", "created[gte]", "expand[]"]
    responses = [
        (
            f"GET /api/invoices/?{name}={value[:40]}",
            client.get(f"/api/invoices/?{quote(name)}={value}", **_api(client, world)),
        )
        for name in [*names, "unknown"]
        for value in _values()
    ]
    detail = f"/api/invoices/{invoice_api_id(world.invoice)}/"
    responses += [
        (
            f"GET {detail}?expand[]={value}",
            client.get(f"{detail}?expand[]={value}", **_api(client, world)),
        )
        for value in _values()
    ]
    assert _failures(responses) == []
    assert all(r["Content-Type"] == "application/json" for _, r in responses)


def test_api_pay_bodies(world):
    client = Client(raise_request_exception=False)
    url = f"/api/invoices/{invoice_api_id(world.invoice)}/pay"
    bodies = []
    for value in JSON_VALUES:
        for name in (
            "payment_method",
            "off_session",
            "expand",
            value if isinstance(value, str) else "k",
        ):
            bodies.append(json.dumps({"payment_method": world.method.provider_id, name: value}))
        bodies.append(json.dumps({"payment_method": world.method.provider_id, "expand": [value]}))
    bodies += [
        "[" * 5000 + "]" * 5000,
        '{"payment_method":' * 5000 + "1" + "}" * 5000,
        '{"payment_method": "\\ud800"}',
        '{"payment_method": "pm_\\u0000"}',
        b'{"payment_method": "\xed\xa0\x80"}',
        b"\xff\xfe",
        "[]",
        "null",
        "",
    ]
    responses = []
    for body in bodies:
        response = client.post(url, body, content_type="application/json", **_api(client, world))
        responses.append((f"POST pay {str(body)[:60]}", response))
    for key in ("\x00", "a\x00b", "²", "x" * 300):
        response = client.post(
            url,
            json.dumps({"payment_method": "pm_unknown"}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=key,
            **_api(client, world),
        )
        responses.append((f"POST pay Idempotency-Key={key[:20]!r}", response))
    assert _failures(responses) == []
    assert all(r["Content-Type"] == "application/json" for _, r in responses)


@pytest.mark.parametrize(
    "value", ["\ud800", "\x00", "pm_\x00", "a" * 300], ids=["surrogate", "nul", "pm-nul", "long"]
)
def test_api_pay_refuses_an_unstorable_payment_method_with_a_400(world, value):
    client = Client(raise_request_exception=False)
    response = client.post(
        f"/api/invoices/{invoice_api_id(world.invoice)}/pay",
        json.dumps({"payment_method": value}),
        content_type="application/json",
        **_api(client, world),
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "payment_method"


def test_api_deep_json_is_a_400(world):
    client = Client(raise_request_exception=False)
    response = client.post(
        f"/api/invoices/{invoice_api_id(world.invoice)}/pay",
        "[" * 5000 + "]" * 5000,
        content_type="application/json",
        **_api(client, world),
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "body_invalid"


@pytest.mark.parametrize("ref", ["in_²", "in_٣", "in_\U0001d7d9", "in_" + "9" * 30])
def test_api_unicode_digit_ids_are_404(world, ref):
    client = Client(raise_request_exception=False)
    response = client.get(f"/api/invoices/{quote(ref)}/", **_api(client, world))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


@pytest.mark.parametrize("ref", ["draft-²", "draft-٣", "draft-" + "9" * 30])
def test_unicode_digit_draft_refs_are_404(owner_client, ref):
    assert owner_client.get(f"/invoices/{quote(ref)}/").status_code == 404


@pytest.mark.parametrize("value", ["²", "٣", "9" * 30])
def test_customer_switch_with_unicode_digits_says_choose(owner_client, value):
    response = owner_client.post("/account/customer/", {"customer": value})
    assert response.status_code == 400
    assert "Choose one of the customers listed." in response.content.decode()


def test_pay_page_refuses_a_nul_payment_method_with_a_message(world, owner_client):
    response = owner_client.post(
        f"/invoices/{world.invoice.number}/pay/", {"payment_method": "pm\x00"}
    )
    assert response.status_code == 400
    assert "Choose one of your saved cards." in response.content.decode()


@pytest.mark.parametrize(
    ("url", "json_answer"),
    [
        ("/api/invoices/in_1/pay", True),
        ("/api/invoices/", True),
        ("/stripe/", False),
        ("/accounts/login/", False),
        ("/invoices/download.zip", False),
        ("/accounts/password_reset/", False),
    ],
)
def test_a_body_over_the_limit_is_a_413(world, url, json_answer):
    client = Client(raise_request_exception=False)
    body = "a=" + "x" * BIG
    response = client.generic(
        "POST", url, body, content_type="application/x-www-form-urlencoded", **_api(client, world)
    )
    assert response.status_code == 413
    if json_answer:
        assert response.json()["error"]["code"] == "request_too_large"
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in response.content.decode()


def test_a_body_just_under_the_limit_is_not_refused(world):
    client = Client(raise_request_exception=False)
    response = client.post(
        f"/api/invoices/{invoice_api_id(world.invoice)}/pay",
        json.dumps({"payment_method": "pm_x", "pad": "x" * 2_000_000}),
        content_type="application/json",
        **_api(client, world),
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parameter_unknown"


def test_stripe_endpoint_bodies(db):
    client = Client(raise_request_exception=False)
    payloads = [
        "[" * 5000 + "]" * 5000,
        json.dumps({"type": "x", "data": {"object": {}}}),
        json.dumps({"id": "\ud800", "type": "x", "data": {"object": {}}}),
        '{"id": "evt_\\u0000", "type": "x", "data": {"object": {}}}',
        "\x00",
        "",
    ]
    responses = []
    for payload in payloads:
        for header in (sign(payload), "", "t=1,v1=\x00"):
            response = client.post(
                "/stripe/", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
            responses.append((f"/stripe/ {payload[:30]!r} {header[:10]!r}", response))
    assert _failures(responses) == []


def test_admin_search_and_filters(db):
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    make_invoice()
    responses = []
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for value in _values():
            responses.append((f"GET {url}?q={value[:30]}", client.get(f"{url}?q={value}")))
            responses.append((f"GET {url}?p={value[:30]}", client.get(f"{url}?p={value}")))
        for value in ("²", "\x00", "9" * 30):
            change = url.replace("/", "/", 1) + f"{quote(value)}/change/"
            responses.append((f"GET {change}", client.get(change)))
    assert _failures(responses) == []
