"""The pay page's "pay now with a saved card" uses the API's service."""

import pytest

from billing.invoices.models import InvoiceStatus
from billing.payments.models import PaymentKind
from contracts.models import Role
from tests.factories import MembershipFactory, PaymentMethodFactory, make_invoice

pytestmark = pytest.mark.django_db


def _card(customer, last4):
    return PaymentMethodFactory(customer=customer, last4=last4)


def test_member_pays_with_a_saved_card(client, customer, owner):
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    client.force_login(owner)
    page = client.get(f"/invoices/{invoice.number}/pay/")
    assert "•••• 4242" in page.content.decode()
    response = client.post(f"/invoices/{invoice.number}/pay/", {"payment_method": card.provider_id})
    assert response.status_code == 303 and response["Location"] == invoice.get_absolute_url()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.payments.get().kind == PaymentKind.API


def test_declined_saved_card_shows_the_reason_and_keeps_the_invoice_open(client, customer, owner):
    card = _card(customer, "0002")
    invoice = make_invoice(customer=customer)
    client.force_login(owner)
    response = client.post(f"/invoices/{invoice.number}/pay/", {"payment_method": card.provider_id})
    assert response.status_code == 402
    assert "declined" in response.content.decode().lower()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN


def test_viewers_and_pay_link_holders_see_no_saved_cards(client, customer):
    _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    assert client.get(f"/invoices/{invoice.number}/pay/").status_code == 403
    client.logout()
    from billing.invoices.links import pay_token

    page = client.get(f"/invoices/{invoice.number}/pay/", {"token": pay_token(invoice)})
    assert page.status_code == 200 and "4242" not in page.content.decode()
