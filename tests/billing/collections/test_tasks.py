"""Calendar tasks: thin, idempotent (run twice), safe when the broker is down."""

import datetime

import pytest
import time_machine
from django.core.management import call_command
from kombu.exceptions import OperationalError

from billing.collections import tasks
from billing.invoices import services as billing
from billing.invoices import tasks as invoice_tasks
from billing.invoices.documents import pdf as documents
from billing.invoices.models import Invoice
from billing.payments import services as payments
from billing.payments.models import PaymentKind
from contracts.models import CancellationReason
from contracts.services import contract_cancel
from core import queue
from tests.factories import make_contract, make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def payments_module(monkeypatch):
    """Records the calls the tasks make into billing.payments.services instead of paying."""
    calls = []
    monkeypatch.setattr(
        payments, "invoice_charge_automatically", lambda **kw: calls.append(("charge", kw))
    )
    monkeypatch.setattr(
        payments, "payments_reconcile", lambda **kw: calls.append(("reconcile", kw)) or 0
    )
    monkeypatch.setattr(
        payments, "checkout_expire_for_invoice", lambda **kw: calls.append(("expire", kw)) or 0
    )
    return calls


def _fail_automatic(invoice, day):
    with time_machine.travel(datetime.datetime(2026, 1, day, 6), tick=False):
        payment = payments.payment_create(
            invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
        )
        payments.payment_record_failure(payment_id=payment.pk, actor="t", code="x", message="no")


def test_run_billing_task_twice_issues_once(customer):
    make_contract(customer, started_on=datetime.date(2026, 1, 1))
    with time_machine.travel(datetime.datetime(2026, 1, 1, 1), tick=False):
        assert invoice_tasks.run_billing() == 1
        assert invoice_tasks.run_billing() == 0
    with time_machine.travel(datetime.datetime(2026, 2, 1, 1), tick=False):
        assert invoice_tasks.run_billing() == 1
        assert invoice_tasks.run_billing() == 0
    assert Invoice.objects.count() == 2


def test_run_billing_command_prints_counts(customer, capsys):
    make_contract(customer, started_on=datetime.date(2026, 1, 1))
    call_command("run_billing", "--date", "2026-01-01")
    call_command("run_billing", "--date", "2026-01-01")
    out = capsys.readouterr().out
    assert "Billing run 2026-01-01: 1 invoice(s) issued, 0 contract(s) with errors." in out
    assert "Billing run 2026-01-01: 0 invoice(s) issued" in out


def test_finalized_invoice_is_charged_and_rendered(
    customer, payments_module, django_capture_on_commit_callbacks, monkeypatch
):
    rendered = []
    monkeypatch.setattr(
        documents, "invoice_pdf_render", lambda **kw: rendered.append(kw["invoice_id"])
    )
    with django_capture_on_commit_callbacks(execute=True):
        invoice = make_invoice(make_contract(customer))
    assert payments_module == [
        (
            "charge",
            {"invoice_id": invoice.pk, "actor": tasks.CALENDAR, "hold": tasks.held_for_review},
        )
    ]
    assert invoice.pk in rendered


def test_cancelled_contract_is_never_charged(customer):
    from tests.factories import PaymentMethodFactory

    PaymentMethodFactory(customer=customer)
    invoice = make_invoice(make_contract(customer))
    contract_cancel(
        contract_id=invoice.contract_id, reason=CancellationReason.NON_PAYMENT, actor="t"
    )
    tasks.charge_invoice(invoice.pk)
    tasks.charge_invoice(invoice.pk)
    assert not invoice.payments.exists()


def test_paid_or_written_off_invoices_are_not_charged(customer):
    from tests.factories import PaymentMethodFactory

    PaymentMethodFactory(customer=customer)
    paid = make_invoice(make_contract(customer))
    payments.invoice_record_out_of_band_payment(invoice_id=paid.pk, actor="t")
    written_off = make_invoice(make_contract(customer))
    billing.invoice_mark_uncollectible(invoice_id=written_off.pk, actor="t")
    tasks.charge_invoice(paid.pk)
    tasks.charge_invoice(written_off.pk)
    assert paid.payments.count() == 1, "only the bank transfer"
    assert not written_off.payments.exists()


def test_retries_follow_one_three_five_days_then_stop(customer, payments_module):
    invoice = make_invoice(make_contract(customer))

    def retried_on(day):
        payments_module.clear()
        with time_machine.travel(datetime.datetime(2026, 1, day, 12), tick=False):
            tasks.retry_failed_charges()
            tasks.retry_failed_charges()
        return [kw["invoice_id"] for _, kw in payments_module]

    _fail_automatic(invoice, 2)
    assert retried_on(2) == []
    assert retried_on(3) == [invoice.pk, invoice.pk]  # fake: no new Payment row
    _fail_automatic(invoice, 3)
    assert retried_on(4) == []
    assert retried_on(5) == [invoice.pk, invoice.pk]
    _fail_automatic(invoice, 5)
    assert retried_on(6) == []
    assert retried_on(7) == [invoice.pk, invoice.pk]
    _fail_automatic(invoice, 7)
    assert retried_on(8) == []
    assert retried_on(20) == []


def test_no_retry_for_a_cancelled_contract(customer, payments_module):
    invoice = make_invoice(make_contract(customer))
    _fail_automatic(invoice, 2)
    contract_cancel(
        contract_id=invoice.contract_id, reason=CancellationReason.NON_PAYMENT, actor="t"
    )
    with time_machine.travel(datetime.datetime(2026, 1, 3, 12), tick=False):
        tasks.retry_failed_charges()
    assert payments_module == []


def test_grace_cancellation_expires_checkout_sessions(
    customer, payments_module, django_capture_on_commit_callbacks
):
    invoice = make_invoice(make_contract(customer))
    with (
        time_machine.travel(datetime.datetime(2026, 1, 22, 1), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        from billing.collections.tasks import enforce_grace_period

        enforce_grace_period()
        enforce_grace_period()
    assert payments_module == [("expire", {"invoice_id": invoice.pk, "actor": tasks.CALENDAR})]


def test_broker_down_does_not_break_the_caller(monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.charge_invoice, "delay", refuse)
    assert queue.enqueue(tasks.charge_invoice, 1) is False
    assert "next beat tick" in caplog.text


def test_every_notification_task_run_twice_sends_one_mail(customer):
    from django.core import mail

    from billing.collections.tasks import send_cancellation_notice
    from tests.factories import MembershipFactory

    MembershipFactory(customer=customer, user__email="owner@example.com")
    failed_invoice = make_invoice(make_contract(customer))
    payment = payments.payment_create(
        invoice_id=failed_invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
    )
    payments.payment_record_failure(payment_id=payment.pk, actor="t", code="x", message="no")
    paid = make_invoice(make_contract(customer))
    payments.invoice_record_out_of_band_payment(invoice_id=paid.pk, actor="t")
    gone = make_contract(customer)
    contract_cancel(contract_id=gone.pk, reason=CancellationReason.NON_PAYMENT, actor="t")
    mail.outbox.clear()

    for run in (
        lambda: tasks.notify_payment_failed(payment.pk),
        lambda: tasks.notify_invoice_paid(paid.pk),
        lambda: send_cancellation_notice(gone.pk),
    ):
        before = len(mail.outbox)
        run()
        run()
        assert len(mail.outbox) == before + 1
