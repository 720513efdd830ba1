"""A reused Pay online session must send its payer back where that payer can go."""

from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client

from billing.invoices.links import pay_token
from billing.invoices.models import InvoiceStatus
from tests.factories import make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


def _start(client, invoice, **data):
    response = client.post(f"/invoices/{invoice.number}/pay/", data)
    assert response.status_code == 303, response.content
    return response["Location"]


def test_the_pdf_link_payer_does_not_reuse_a_members_session(client, owner, customer):
    invoice = make_invoice(customer=customer)
    member = Client()
    member.force_login(owner)
    members_session = _start(member, invoice)

    token = pay_token(invoice)
    anonymous_session = _start(client, invoice, token=token)
    assert anonymous_session != members_session

    done = client.post(anonymous_session, {"card": "4242424242424242", "action": "pay"})
    assert done.status_code == 303
    back = urlparse(done["Location"])
    assert back.path == f"/invoices/{invoice.number}/pay/done/"
    assert parse_qs(back.query)["token"] == [token]
    page = client.get(done["Location"])
    assert page.status_code == 200  # the receipt page, not the login page
    assert b"Paid" in page.content
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_each_payer_keeps_reusing_their_own_session(client, owner, customer):
    invoice = make_invoice(customer=customer)
    member = Client()
    member.force_login(owner)
    token = pay_token(invoice)
    members_session = _start(member, invoice)
    anonymous_session = _start(client, invoice, token=token)
    # Two clicks of the same payer still make one session.
    assert _start(member, invoice) == members_session
    assert _start(client, invoice, token=token) == anonymous_session
    assert invoice.payments.count() == 2
    stored = invoice.payments.get(checkout_url=members_session)
    assert stored.checkout_success_url == f"http://testserver/invoices/{invoice.number}/pay/done/"
    assert stored.checkout_cancel_url == (
        f"http://testserver/invoices/{invoice.number}/pay/cancelled/"
    )
