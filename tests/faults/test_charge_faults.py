"""Fault injection around automatic charges: provider down, a worker killed mid-charge."""

import pytest

from billing.collections import tasks
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import PaymentKind, PaymentStatus
from billing.payments.providers import ProviderUnavailable
from billing.payments.providers.sandbox import SandboxProvider
from tests.factories import PaymentMethodFactory, make_invoice

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs (not an Exception)."""


@pytest.fixture
def default_card(customer):
    return PaymentMethodFactory(customer=customer, last4="4242")


@pytest.fixture
def charges_seen(monkeypatch):
    """Every charge request the provider receives, with the idempotency key it carried."""
    seen = []
    real = SandboxProvider.charge_saved_method

    def spy(self, *, payment, **kw):
        seen.append(payment.idempotency_key)
        return real(self, payment=payment, **kw)

    monkeypatch.setattr(SandboxProvider, "charge_saved_method", spy)
    return seen


def test_worker_killed_after_the_provider_charged_resumes_the_same_attempt(
    customer, default_card, charges_seen, monkeypatch
):
    invoice = make_invoice(customer=customer)
    real_apply = payments._apply_outcome

    def die(*args, **kwargs):
        raise WorkerKilled

    monkeypatch.setattr(payments, "_apply_outcome", die)
    with pytest.raises(WorkerKilled):
        tasks.charge_invoice(invoice.pk)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.payments.get().status == PaymentStatus.PENDING

    # The message is delivered again (acks_late); the task resumes, it does not re-charge.
    monkeypatch.setattr(payments, "_apply_outcome", real_apply)
    tasks.charge_invoice(invoice.pk)
    tasks.charge_invoice(invoice.pk)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.payments.count() == 1
    assert len(charges_seen) == 2 and charges_seen[0] == charges_seen[1], (
        "the retry reached the provider under the first attempt's idempotency key"
    )


def test_provider_down_during_an_automatic_charge_keeps_the_attempt_for_later(
    customer, default_card, charges_seen, monkeypatch
):
    invoice = make_invoice(customer=customer)

    def down(self, **kw):
        raise ProviderUnavailable()

    with monkeypatch.context() as m:
        m.setattr(SandboxProvider, "charge_saved_method", down)
        with pytest.raises(ProviderUnavailable):
            payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="t")
    invoice.refresh_from_db()
    payment = invoice.payments.get()
    assert invoice.status == InvoiceStatus.OPEN and payment.status == PaymentStatus.PENDING

    payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="t")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.payments.get().pk == payment.pk
    assert charges_seen == [payment.idempotency_key]


def test_charge_task_schedules_a_retry_that_resumes_the_same_attempt(
    customer, default_card, monkeypatch
):
    invoice = make_invoice(customer=customer)
    keys = []

    def down(self, *, payment, **kw):
        keys.append(payment.idempotency_key)
        raise ProviderUnavailable()

    monkeypatch.setattr(SandboxProvider, "charge_saved_method", down)
    from celery.exceptions import Retry

    for _ in range(2):  # the outage schedules a retry; the retry arrives and resumes
        with pytest.raises(Retry):
            tasks.charge_invoice.apply(args=[invoice.pk])
    assert len(keys) == 2 and len(set(keys)) == 1, "the retry resumes the one attempt"
    assert invoice.payments.get().status == PaymentStatus.PENDING


def test_api_pay_retried_after_an_outage_resumes_the_attempt_and_charges_once(
    customer, default_card, charges_seen, monkeypatch
):
    invoice = make_invoice(customer=customer)

    def down(self, **kw):
        raise ProviderUnavailable()

    def pay():
        return payments.invoice_pay_with_saved_method(
            invoice_id=invoice.pk,
            payment_method_id=default_card.provider_id,
            off_session=False,
            actor="t",
            idempotency_key="order-7",
        )

    with monkeypatch.context() as m:
        m.setattr(SandboxProvider, "charge_saved_method", down)
        with pytest.raises(ProviderUnavailable):
            pay()
    attempt = invoice.payments.get()
    assert (attempt.kind, attempt.status) == (PaymentKind.API, PaymentStatus.PENDING)

    assert pay().status == InvoiceStatus.PAID
    assert pay().status == InvoiceStatus.PAID
    assert invoice.payments.get().pk == attempt.pk
    assert charges_seen == [attempt.idempotency_key], "one charge, under the first key"


def test_two_saved_method_charges_never_run_at_once(customer, default_card, monkeypatch):
    """A charge still processing at the provider blocks a second one (API or automatic)."""
    from billing.payments import services
    from core.errors import DomainError

    invoice = make_invoice(customer=customer)
    first = services.payment_start_saved_method_charge(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
    )
    from billing.payments.models import Payment

    Payment.objects.filter(pk=first.pk).update(status=PaymentStatus.PROCESSING)
    with pytest.raises(DomainError, match="already under way"):
        services.payment_start_saved_method_charge(
            invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.API, actor="t"
        )
    assert payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="t") is None
    assert invoice.payments.count() == 1


@pytest.mark.parametrize("invoice_state", ["open", "void"])
def test_money_taken_after_we_cancelled_the_attempt_is_never_lost(
    customer, invoice_state, django_capture_on_commit_callbacks
):
    """Checkout expired on our side (grace cancelled the contract) but the payer finished it."""
    from billing.invoices import services as invoice_services
    from billing.payments import services
    from billing.payments.providers import sandbox

    invoice = make_invoice(customer=customer)
    attempt = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payments.payment_cancel(payment_id=attempt.pk, actor="t", reason="checkout expired")
    if invoice_state == "void":
        invoice_services.invoice_void(invoice_id=invoice.pk, actor="t")
    success = sandbox.success_event(attempt.pk, sandbox.card_for_last4("4242"))
    with django_capture_on_commit_callbacks(execute=True):  # the automatic refund
        payments.provider_event_apply(success, actor="webhook")
        payments.provider_event_apply(success, actor="webhook")

    invoice.refresh_from_db()
    attempt.refresh_from_db()
    if invoice_state == "open":
        assert invoice.status == InvoiceStatus.PAID and attempt.status == PaymentStatus.SUCCEEDED
    else:
        assert invoice.status == InvoiceStatus.VOID and invoice.amount_paid == 0
        assert attempt.is_duplicate and attempt.status == PaymentStatus.REFUNDED
        assert attempt.amount_refunded == attempt.amount


def test_a_refund_the_provider_did_not_confirm_is_sent_again_under_the_same_key(
    customer, monkeypatch
):
    import datetime

    import time_machine

    from billing.payments import services
    from billing.payments.models import RefundStatus

    invoice = make_invoice(customer=customer)
    attempt = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.API, actor="t"
    )
    services.payment_record_success(payment_id=attempt.pk, actor="t", provider_payment_id="pi_x")
    keys = []
    real = SandboxProvider.refund_create

    def timeout_once(self, *, idempotency_key, **kw):
        keys.append(idempotency_key)
        if len(keys) == 1:
            raise ProviderUnavailable()
        return real(self, idempotency_key=idempotency_key, **kw)

    monkeypatch.setattr(SandboxProvider, "refund_create", timeout_once)
    with pytest.raises(ProviderUnavailable):
        payments.payment_refund(payment_id=attempt.pk, amount=attempt.amount, actor="staff")
    refund = attempt.refunds.get()
    assert refund.status == RefundStatus.PENDING, "a timeout does not say it failed"

    with pytest.raises(Exception, match="still being sent"):
        payments.payment_refund(payment_id=attempt.pk, amount=attempt.amount / 2, actor="staff")
    later = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(minutes=10)
    with time_machine.travel(later, tick=False):
        assert payments.payments_reconcile(actor="reconcile") == 1
        assert payments.payments_reconcile(actor="reconcile") == 0
    refund.refresh_from_db()
    invoice.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert keys == [refund.idempotency_key, refund.idempotency_key]
    assert invoice.status == InvoiceStatus.REFUND
