"""A pay link pays with new payment details only; saved cards are for logged-in paying
members. The card-setup link expires and works only in the session that started it."""

import datetime

import pytest
import time_machine
from django.test import Client

from billing.invoices.links import pay_token
from billing.invoices.models import InvoiceStatus
from billing.payments.models import PaymentMethod, PaymentStatus
from contracts.models import Role
from tests.factories import MembershipFactory, PaymentMethodFactory, make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


@pytest.fixture
def invoice(customer):
    return make_invoice(customer=customer)


@pytest.fixture
def card(customer):
    return PaymentMethodFactory(customer=customer, last4="4242")


def _checkout_by_link(client, invoice) -> str:
    """What the holder of the PDF's link does: Pay online, landing on the sandbox checkout."""
    token = pay_token(invoice)
    response = client.post(f"/invoices/{invoice.number}/pay/?token={token}", {"token": token})
    assert response.status_code == 303, response.content
    return response["Location"]


def test_pay_link_holder_neither_sees_nor_charges_saved_cards(client, invoice, card):
    url = _checkout_by_link(client, invoice)
    page = client.get(url)
    assert page.status_code == 200
    assert "•••• 4242" not in page.content.decode()
    assert f'name="saved" value="{card.pk}"' not in page.content.decode()
    forged = client.post(url, {"saved": card.pk, "action": "pay"})
    assert forged.status_code == 400
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert not invoice.payments.filter(status=PaymentStatus.SUCCEEDED).exists()
    # New payment details still work through the link.
    assert client.post(url, {"card": "4242424242424242", "action": "pay"}).status_code == 303
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_another_customers_owner_with_the_link_gets_no_saved_cards(
    client, invoice, card, other_customer
):
    client.force_login(MembershipFactory(customer=other_customer).user)
    url = _checkout_by_link(client, invoice)
    assert "•••• 4242" not in client.get(url).content.decode()
    assert client.post(url, {"saved": card.pk}).status_code == 400


def test_viewer_gets_no_saved_cards_on_the_checkout(client, customer, invoice, card):
    client.force_login(MembershipFactory(customer=customer, role=Role.VIEWER).user)
    url = _checkout_by_link(client, invoice)
    assert "•••• 4242" not in client.get(url).content.decode()
    assert client.post(url, {"saved": card.pk}).status_code == 400


def test_logged_in_owner_pays_with_a_saved_card_on_the_checkout(client, owner, invoice, card):
    client.force_login(owner)
    url = _checkout_by_link(client, invoice)
    assert "•••• 4242" in client.get(url).content.decode()
    assert client.post(url, {"saved": card.pk}).status_code == 303
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


@pytest.mark.parametrize("value", ["²", "1\x00", "abc", "-1", "99999999999999999999"])
def test_a_malformed_saved_card_choice_is_a_clear_400(client, owner, invoice, card, value):
    client.force_login(owner)
    url = _checkout_by_link(client, invoice)
    assert client.post(url, {"saved": value}).status_code == 400


def _start_setup(client) -> str:
    response = client.post("/payment-methods/", {"action": "add"})
    assert response.status_code == 303
    return response["Location"]


def test_setup_link_works_only_in_the_session_that_started_it(client, owner, customer):
    client.force_login(owner)
    url = _start_setup(client)
    # The same URL in any other session: anonymous, or the same person logged in elsewhere.
    anonymous = Client()
    assert anonymous.get(url).status_code == 404
    assert anonymous.post(url, {"card": "4242424242424242"}).status_code == 404
    elsewhere = Client()
    elsewhere.force_login(owner)
    assert elsewhere.post(url, {"card": "4242424242424242"}).status_code == 404
    assert not PaymentMethod.objects.filter(customer=customer).exists()
    assert client.post(url, {"card": "4242424242424242"}).status_code == 303
    assert PaymentMethod.objects.filter(customer=customer).count() == 1


def test_setup_link_stops_when_the_member_loses_the_paying_role(client, customer):
    membership = MembershipFactory(customer=customer, role=Role.OWNER)
    client.force_login(membership.user)
    url = _start_setup(client)
    membership.role = Role.VIEWER
    membership.save()
    assert client.post(url, {"card": "4242424242424242"}).status_code == 404
    assert not PaymentMethod.objects.filter(customer=customer).exists()


def test_setup_link_expires_after_an_hour(client, owner, customer):
    start = datetime.datetime(2026, 6, 5, 12, tzinfo=datetime.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        client.force_login(owner)
        url = _start_setup(client)
        traveller.shift(datetime.timedelta(minutes=59))
        assert client.get(url).status_code == 200
        traveller.shift(datetime.timedelta(minutes=2))
        expired = client.post(url, {"card": "4242424242424242"})
        assert expired.status_code == 410
        assert "expired" in expired.content.decode()
    assert not PaymentMethod.objects.filter(customer=customer).exists()
