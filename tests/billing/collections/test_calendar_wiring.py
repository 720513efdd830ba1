"""The calendar's tasks driving the real payment services through the sandbox provider."""

import pytest
from django.core import mail

from billing.invoices.models import InvoiceStatus
from billing.payments.models import PaymentKind, PaymentMethod, PaymentStatus
from contracts.models import Role
from tests.factories import (
    MembershipFactory,
    PaymentMethodFactory,
    make_contract,
    make_invoice,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def saved_card(customer):
    MembershipFactory(customer=customer, role=Role.BILLING, user__email="payer@example.com")

    def save(last4: str) -> PaymentMethod:
        return PaymentMethodFactory(customer=customer, last4=last4)

    return save


def _issue(customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        invoice = make_invoice(make_contract(customer))
    # Callbacks queued by callbacks (receipt after payment) run too.
    while callbacks:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            pass
    invoice.refresh_from_db()
    return invoice


def test_a_new_invoice_is_charged_to_the_default_card_and_receipted_once(
    customer, saved_card, django_capture_on_commit_callbacks
):
    saved_card("4242")
    invoice = _issue(customer, django_capture_on_commit_callbacks)
    assert invoice.status == InvoiceStatus.PAID
    payment = invoice.payments.get()
    assert (payment.kind, payment.status, payment.method_last4) == (
        PaymentKind.AUTOMATIC,
        PaymentStatus.SUCCEEDED,
        "4242",
    )
    receipts = [m for m in mail.outbox if invoice.number in m.subject and "eceipt" in m.subject]
    assert len(receipts) == 1, [m.subject for m in mail.outbox]


def test_a_declined_automatic_charge_keeps_the_invoice_open_and_tells_the_customer(
    customer, saved_card, django_capture_on_commit_callbacks
):
    saved_card("0002")
    invoice = _issue(customer, django_capture_on_commit_callbacks)
    assert invoice.status == InvoiceStatus.OPEN
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.FAILED and payment.failure_message
    failed = [m for m in mail.outbox if m.subject == f"Payment for invoice {invoice.number} failed"]
    assert len(failed) == 1
    assert "/pay/?token=" in failed[0].body


def test_three_d_secure_off_session_emails_the_pay_online_link(
    customer, saved_card, django_capture_on_commit_callbacks
):
    saved_card("3184")
    invoice = _issue(customer, django_capture_on_commit_callbacks)
    assert invoice.status == InvoiceStatus.OPEN
    asks = [m for m in mail.outbox if "confirm the payment" in m.subject]
    assert len(asks) == 1 and "/pay/?token=" in asks[0].body


def test_finalisation_renders_the_pdf_off_the_request_path(
    customer, django_capture_on_commit_callbacks
):
    from django.core.files.storage import default_storage

    from billing.invoices.documents.pdf import storage_name

    invoice = _issue(customer, django_capture_on_commit_callbacks)
    assert default_storage.exists(storage_name(invoice))
    with default_storage.open(storage_name(invoice)) as stored:
        assert stored.read(4) == b"%PDF"


def test_a_first_charge_that_could_not_be_queued_is_made_by_the_next_sweep(
    customer, saved_card, django_capture_on_commit_callbacks, monkeypatch
):
    import datetime

    import time_machine
    from kombu.exceptions import OperationalError

    from billing.collections import tasks

    saved_card("4242")
    real_delay = tasks.charge_invoice.delay

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.charge_invoice, "delay", broker_down)
    invoice = _issue(customer, django_capture_on_commit_callbacks)
    assert invoice.status == InvoiceStatus.OPEN and not invoice.payments.exists()

    monkeypatch.setattr(tasks.charge_invoice, "delay", real_delay)
    assert tasks.retry_failed_charges() == 0, "not before the charge had time to run"
    later = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        assert tasks.retry_failed_charges() == 1
        assert tasks.retry_failed_charges() == 0
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.payments.count() == 1
