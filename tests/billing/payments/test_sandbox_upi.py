"""The sandbox's rupee methods: UPI (Razorpay's test VPAs) and net banking (the test bank's
Success and Failure), offered for INR invoices and driving the same services."""

from urllib.parse import urlparse

import pytest

from billing.invoices.models import InvoiceStatus
from billing.payments.models import PaymentStatus
from tests.factories import make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True
    settings.RAZORPAY_KEY_ID = ""


@pytest.fixture
def invoice(customer):
    return make_invoice(customer=customer, currency="INR", price="2500.00")


@pytest.fixture
def checkout(client, owner, invoice):
    client.force_login(owner)
    response = client.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 303
    return response["Location"]


def test_inr_checkout_offers_upi_and_net_banking(client, checkout):
    page = client.get(checkout).content.decode()
    assert "UPI (test)" in page and "success@razorpay" in page and "failure@razorpay" in page
    assert "Net banking (test)" in page and "HDFC Bank" in page


def test_euro_checkout_does_not_offer_upi(client, owner, customer):
    euro = make_invoice(customer=customer)
    client.force_login(owner)
    url = client.post(f"/invoices/{euro.number}/pay/")["Location"]
    assert "success@razorpay" not in client.get(url).content.decode()
    refused = client.post(url, {"action": "upi", "vpa": "success@razorpay"})
    assert refused.status_code == 400
    assert b"INR invoices only" in refused.content
    euro.refresh_from_db()
    assert euro.status == InvoiceStatus.OPEN


def test_upi_success_pays_the_invoice(client, invoice, checkout):
    done = client.post(checkout, {"action": "upi", "vpa": " Success@Razorpay "})
    assert done.status_code == 303
    assert urlparse(done["Location"]).path == f"/invoices/{invoice.number}/pay/done/"
    invoice.refresh_from_db()
    payment = invoice.payments.get()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
    assert (payment.status, payment.method_brand, payment.currency_received) == (
        PaymentStatus.SUCCEEDED,
        "UPI",
        "INR",
    )


def test_upi_failure_leaves_the_invoice_open(client, invoice, checkout):
    failed = client.post(checkout, {"action": "upi", "vpa": "failure@razorpay"})
    assert failed.status_code == 402
    assert b"declined this payment" in failed.content
    invoice.refresh_from_db()
    payment = invoice.payments.get()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "payment_failed")
    # The same page may be used again, and then succeeds.
    assert client.post(checkout, {"action": "upi", "vpa": "success@razorpay"}).status_code == 303
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_an_unknown_vpa_is_refused_with_a_message(client, invoice, checkout):
    response = client.post(checkout, {"action": "upi", "vpa": "someone@okbank"})
    assert response.status_code == 400
    assert b"test UPI IDs" in response.content
    assert invoice.payments.get().status == PaymentStatus.PENDING


def test_net_banking_success_and_failure(client, invoice, checkout):
    failed = client.post(checkout, {"action": "netbanking", "bank": "HDFC", "outcome": "failure"})
    assert failed.status_code == 402
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    done = client.post(checkout, {"action": "netbanking", "bank": "SBIN", "outcome": "success"})
    assert done.status_code == 303
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.payments.get().method_brand == "Net banking"


def test_net_banking_needs_a_test_bank_and_an_outcome(client, invoice, checkout):
    response = client.post(checkout, {"action": "netbanking", "bank": "XXXX", "outcome": "maybe"})
    assert response.status_code == 400
    assert b"Choose a test bank" in response.content
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
