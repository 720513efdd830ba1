"""A success event and an automatic charge racing on one invoice keep exactly one payment."""

import threading

import pytest
from django.db import connection

from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import PaymentKind, PaymentMethod, PaymentStatus
from billing.payments.providers import sandbox
from tests.factories import make_invoice
from tests.threads import run_together

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


def _run_together(*jobs):
    return run_together(*jobs)[1]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs row locks")
@pytest.mark.parametrize("round_", range(4))
def test_webhook_success_and_automatic_charge_race(customer, round_):
    invoice = make_invoice(customer=customer)
    PaymentMethod.objects.create(
        customer=customer,
        provider="sandbox",
        provider_id=f"pm_sandbox_4242_{round_}",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2034,
        is_default=True,
    )
    checkout = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    card = sandbox.card_for_last4("4242")

    def webhook():
        payments.provider_event_apply(sandbox.success_event(checkout.pk, card), actor="webhook")

    def automatic():
        payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="billing run")

    jobs = (webhook, automatic) if round_ % 2 else (automatic, webhook)
    assert _run_together(*jobs) == []

    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.amount_paid == invoice.total
    kept = invoice.payments.filter(status=PaymentStatus.SUCCEEDED, is_duplicate=False)
    assert kept.count() == 1
    others = invoice.payments.exclude(pk=kept.get().pk).exclude(
        status__in=[PaymentStatus.PENDING, PaymentStatus.CANCELLED]
    )
    for other in others:
        assert other.is_duplicate
        assert other.status == PaymentStatus.REFUNDED
        assert other.amount_refunded == other.amount
    assert invoice.amount_refunded == 0
    # Whichever order ran (the loop above may be empty): the customer keeps paying once.
    taken = invoice.payments.filter(status__in=[PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED])
    assert sum(p.amount - p.amount_refunded for p in taken) == invoice.total


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs row locks")
def test_charge_that_lands_after_the_webhook_is_refunded(customer, monkeypatch):
    """The automatic charge is in flight at the provider while the webhook pays the invoice."""
    invoice = make_invoice(customer=customer)
    PaymentMethod.objects.create(
        customer=customer,
        provider="sandbox",
        provider_id="pm_sandbox_4242_x",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2034,
        is_default=True,
    )
    checkout = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    charging, webhook_done = threading.Event(), threading.Event()
    real_charge = sandbox.SandboxProvider.charge_saved_method

    def slow_charge(self, **kw):
        charging.set()
        webhook_done.wait(10)
        return real_charge(self, **kw)

    monkeypatch.setattr(sandbox.SandboxProvider, "charge_saved_method", slow_charge)

    def webhook():
        charging.wait(10)
        card = sandbox.card_for_last4("4242")
        payments.provider_event_apply(sandbox.success_event(checkout.pk, card), actor="webhook")
        webhook_done.set()

    def automatic():
        payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="billing run")

    assert _run_together(webhook, automatic) == []
    invoice.refresh_from_db()
    checkout.refresh_from_db()
    automatic_payment = invoice.payments.get(kind=PaymentKind.AUTOMATIC)
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
    assert checkout.status == PaymentStatus.SUCCEEDED and not checkout.is_duplicate
    assert automatic_payment.is_duplicate
    assert automatic_payment.status == PaymentStatus.REFUNDED
    assert automatic_payment.refunds.get().reason == "duplicate"
    assert invoice.amount_refunded == 0
