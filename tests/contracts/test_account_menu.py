"""The header's account menu, the log-in field, logging out, removing a card."""

import pytest

from billing.payments.models import PaymentMethod
from contracts.models import Role
from tests.factories import MembershipFactory, PaymentMethodFactory

pytestmark = pytest.mark.django_db


def _menu(html: str) -> str:
    return html.split('<ul class="row-menu__list" role="menu" aria-label="Account">', 1)[1].split(
        "</ul>", 1
    )[0]


def test_the_account_menu_reaches_what_the_role_may_use(client, owner, customer):
    client.force_login(owner)
    menu = _menu(client.get("/contracts/").content.decode())
    for href in (
        'href="/payment-methods/"',
        'href="/settings/tokens/"',
        'href="/settings/webhooks/"',
        'href="/account/activity/"',
    ):
        assert href in menu
    assert 'action="/accounts/logout/"' in menu and "Log out" in menu

    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    menu = _menu(client.get("/contracts/").content.decode())
    assert "/payment-methods/" not in menu and "/settings/tokens/" not in menu
    assert "/settings/webhooks/" not in menu
    assert "/account/activity/" in menu and "/account/billing/" in menu and "Log out" in menu


def test_the_menu_is_there_on_pages_outside_the_customer_views(client, owner):
    client.force_login(owner)
    html = client.get("/invoices/INV-2099-000001/").content.decode()  # the 404 page
    assert 'href="/settings/tokens/"' in _menu(html)


def test_the_log_in_field_asks_for_the_e_mail_address(client, owner):
    html = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">E-mail</label>' in html
    assert "Username" not in html
    response = client.post("/accounts/login/", {"username": owner.username, "password": "wrong"})
    assert "correct e-mail address and password" in response.content.decode()


def test_logging_out_says_so(client, owner):
    client.force_login(owner)
    response = client.post("/accounts/logout/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/"
    assert "You are logged out." in response.content.decode()
    assert client.get("/invoices/").status_code == 302


def test_remove_asks_first_and_says_what_changes(client, owner, customer):
    default = PaymentMethodFactory(customer=customer, last4="4242")
    other = PaymentMethodFactory(
        customer=customer, last4="4444", brand="mastercard", is_default=False
    )
    client.force_login(owner)
    listing = client.get("/payment-methods/").content.decode()
    assert f'href="/payment-methods/{default.pk}/remove/"' in listing
    assert 'value="remove"' not in listing, "the list itself removes nothing in one click"
    page = client.get(f"/payment-methods/{default.pk}/remove/")
    html = page.content.decode()
    assert "Remove Visa •••• 4242?" in html and "It is your default method" in html
    assert "Mastercard •••• 4444 remains" in html
    assert PaymentMethod.objects.filter(pk=default.pk).exists(), "asking removes nothing"
    client.post("/payment-methods/", {"action": "remove", "method": default.pk})
    assert list(PaymentMethod.objects.filter(customer=customer)) == [other]
    assert client.get(f"/payment-methods/{default.pk}/remove/").status_code == 404


def test_another_customers_card_cannot_be_asked_about(client, owner, other_customer):
    theirs = PaymentMethodFactory(customer=other_customer)
    client.force_login(owner)
    assert client.get(f"/payment-methods/{theirs.pk}/remove/").status_code == 404
