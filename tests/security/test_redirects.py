"""No redirect leaves the site: next= on log-in, log-out and the customer switch, and the
success/cancel URLs handed to the payment provider."""

import pytest
from django.conf import settings

from billing.payments.models import Payment
from billing.payments.providers import sandbox as sandbox_provider

OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "http://testserver@evil.example/",
    " https://evil.example/",
]


def _assert_on_site(location: str) -> None:
    assert location.startswith("/"), location
    assert not location.startswith(("//", "/\\")), location
    assert "evil.example" not in location, location


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_next_stays_on_site(client, owner, target):
    page = client.get("/accounts/login/", {"next": target})
    assert "evil.example" not in page.content.decode()
    response = client.post(
        "/accounts/login/", {"username": owner.username, "password": "pw", "next": target}
    )
    assert response.status_code == 302
    _assert_on_site(response["Location"])
    assert response["Location"] == settings.LOGIN_REDIRECT_URL


def test_login_next_on_site_is_kept(client, owner):
    response = client.post(
        "/accounts/login/", {"username": owner.username, "password": "pw", "next": "/contracts/"}
    )
    assert response["Location"] == "/contracts/"


@pytest.mark.parametrize("target", OFF_SITE)
def test_logout_next_stays_on_site(client, owner, target):
    client.force_login(owner)
    response = client.post(f"/accounts/logout/?next={target}")
    assert response.status_code == 302
    _assert_on_site(response["Location"])


@pytest.mark.parametrize("target", OFF_SITE)
def test_customer_switch_next_stays_on_site(client, world, target):
    client.force_login(world.owner.user)
    page = client.get("/account/customer/", {"next": target})
    assert "evil.example" not in page.content.decode()
    response = client.post("/account/customer/", {"customer": world.customer.pk, "next": target})
    assert response.status_code == 302
    assert response["Location"] == "/invoices/"


def test_pay_online_return_urls_come_from_site_url(client, world):
    """Whatever the request says (extra fields, a spoofed forwarded host), the provider is
    told to come back to SITE_URL."""
    client.force_login(world.owner.user)
    response = client.post(
        f"/invoices/{world.invoice.number}/pay/",
        {
            "success_url": "https://evil.example/ok",
            "cancel_url": "https://evil.example/no",
            "next": "https://evil.example/",
        },
        headers={"X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 303
    location = response["Location"]
    assert location.startswith(f"{settings.SITE_URL}/sandbox/checkout/") or location.startswith(
        "/sandbox/checkout/"
    ), location
    token = location.rstrip("/").rsplit("/", 1)[1]
    data = sandbox_provider.checkout_token_loads(token)
    expected = f"{settings.SITE_URL}/invoices/{world.invoice.number}/pay/"
    assert data["s"].startswith(f"{expected}done/"), data
    assert data["c"].startswith(f"{expected}cancelled/"), data
    assert Payment.objects.filter(invoice=world.invoice).count() == 1


def test_pay_online_refuses_a_foreign_host(client, world):
    client.force_login(world.owner.user)
    response = client.post(
        f"/invoices/{world.invoice.number}/pay/", headers={"Host": "evil.example"}
    )
    assert response.status_code == 400
    assert not Payment.objects.filter(invoice=world.invoice).exists()


def test_add_card_return_urls_come_from_site_url(client, world):
    client.force_login(world.owner.user)
    response = client.post(
        "/payment-methods/", {"action": "add", "success_url": "https://evil.example/"}
    )
    assert response.status_code == 303
    token = response["Location"].rstrip("/").rsplit("/", 1)[1]
    data = sandbox_provider.checkout_token_loads(token)
    assert data["s"].startswith(f"{settings.SITE_URL}/payment-methods/"), data
    assert data["c"].startswith(f"{settings.SITE_URL}/payment-methods/"), data


def test_sandbox_return_urls_cannot_be_tampered_with(client, world):
    client.force_login(world.owner.user)
    response = client.post(f"/invoices/{world.invoice.number}/pay/")
    token = response["Location"].rstrip("/").rsplit("/", 1)[1]
    data = sandbox_provider.checkout_token_loads(token)
    forged = token.replace(token.split(":")[0], token.split(":")[0][::-1])
    assert client.get(f"/sandbox/checkout/{forged}/").status_code == 404
    page = client.get(f"/sandbox/checkout/{token}/").content.decode()
    assert data["c"] in page.replace("&amp;", "&")
    assert "evil.example" not in page
