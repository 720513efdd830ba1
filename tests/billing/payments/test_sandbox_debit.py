"""SEPA Direct Debit in the sandbox: Stripe's test IBANs process, and the worker settles them
after SANDBOX_DEBIT_DELAY_SECONDS through the same services as Stripe's events."""

import pytest

from billing.invoices.models import InvoiceStatus
from billing.payments import tasks
from billing.payments.models import PaymentStatus
from tests.factories import make_invoice

pytestmark = pytest.mark.django_db

SUCCEEDS = "DE89 3704 0044 0532 0130 00"
FAILS = "DE62370400440532013001"


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True
    settings.SANDBOX_DEBIT_DELAY_SECONDS = 45


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def queued(monkeypatch):
    """What the checkout hands the worker (instead of running it eagerly, as tests do)."""
    calls = []
    monkeypatch.setattr(
        tasks.sandbox_settle_debit,
        "apply_async",
        lambda args, countdown=None: calls.append((tuple(args), countdown)),
    )
    return calls


def _checkout(client, invoice) -> str:
    response = client.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 303
    return response["Location"]


def test_a_test_iban_processes_then_the_worker_pays_the_invoice(logged_in, customer, queued):
    invoice = make_invoice(customer=customer)
    url = _checkout(logged_in, invoice)
    assert b"SEPA Direct Debit (test)" in logged_in.get(url).content
    done = logged_in.post(url, {"action": "debit", "iban": SUCCEEDS})
    assert done.status_code == 303
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.PROCESSING
    assert (payment.method_brand, payment.method_last4) == ("SEPA Direct Debit", "3000")
    assert queued == [((payment.pk, "DE89370400440532013000"), 45)]
    page = logged_in.get(invoice.get_absolute_url()).content.decode()
    assert "Payment processing" in page
    assert "Pay online</button>" not in page
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN

    for _ in range(2):  # the worker's delivery may repeat
        tasks.sandbox_settle_debit(*queued[0][0])
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED and payment.method_brand == "SEPA Direct Debit"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total


def test_the_failing_test_iban_leaves_the_invoice_open(logged_in, customer, queued):
    invoice = make_invoice(customer=customer)
    url = _checkout(logged_in, invoice)
    logged_in.post(url, {"action": "debit", "iban": FAILS})
    tasks.sandbox_settle_debit(*queued[0][0])
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.FAILED
    assert "returned the direct debit" in payment.failure_message
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0
    assert "Pay online</button>" in logged_in.get(invoice.get_absolute_url()).content.decode()


def test_an_unknown_iban_or_a_non_euro_invoice_is_refused(logged_in, customer, queued):
    invoice = make_invoice(customer=customer)
    url = _checkout(logged_in, invoice)
    refused = logged_in.post(url, {"action": "debit", "iban": "DE00123"})
    assert refused.status_code == 400 and b"test IBANs" in refused.content
    assert invoice.payments.get().status == PaymentStatus.PENDING

    dollars = make_invoice(customer=customer, currency="USD")
    url = _checkout(logged_in, dollars)
    assert b"SEPA Direct Debit" not in logged_in.get(url).content
    refused = logged_in.post(url, {"action": "debit", "iban": SUCCEEDS})
    assert refused.status_code == 400
    assert dollars.payments.get().status == PaymentStatus.PENDING
    assert queued == []
