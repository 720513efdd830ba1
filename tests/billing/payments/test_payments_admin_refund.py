from decimal import Decimal

import pytest
import responses
from django.core.management import call_command

from billing.invoices.models import InvoiceStatus
from billing.payments import services
from billing.payments.models import PaymentKind, PaymentStatus, RefundStatus
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import load

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


def _paid(invoice):
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    return services.payment_record_success(
        payment_id=payment.pk, actor="t", provider_payment_id=f"pi_sandbox_{payment.pk}"
    )


def test_staff_partial_then_full_refund(client, staff, customer):
    invoice = make_invoice(customer=customer)
    payment = _paid(invoice)
    client.force_login(staff)
    url = "/admin/payments/payment/"
    form = client.post(url, {"action": "refund_partial", "_selected_action": [payment.pk]})
    assert b"Partial refund" in form.content
    client.post(
        url,
        {
            "action": "refund_partial",
            "_selected_action": [payment.pk],
            "apply": "1",
            "amount": "10.00",
            "reason": "goodwill",
        },
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_refunded == Decimal("10.00")
    client.post(url, {"action": "refund_full", "_selected_action": [payment.pk]})
    invoice.refresh_from_db()
    payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.REFUND
    assert payment.status == PaymentStatus.REFUNDED
    assert [r.status for r in payment.refunds.all()] == [RefundStatus.SUCCEEDED] * 2
    # Nothing left: a further refund is refused with a message, not an error page.
    response = client.post(
        url, {"action": "refund_full", "_selected_action": [payment.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "only a succeeded payment can be refunded" in response.content.decode()
    assert payment.refunds.count() == 2


def test_sync_stripe_applies_missed_outcomes(settings, customer, capsys):
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_" + "a" * 24
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    invoice = make_invoice(customer=customer)
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="stripe", kind=PaymentKind.AUTOMATIC, actor="t"
    )
    payment.provider_payment_id = "pi_sync_1"
    payment.save()
    intent = load(
        "payment_intent",
        id="pi_sync_1",
        status="requires_payment_method",
        latest_charge=None,
        last_payment_error={"code": "card_declined", "message": "Your card was declined."},
    )
    with responses.RequestsMock() as http:
        http.get(f"{settings.STRIPE_API_BASE}/v1/payment_intents/pi_sync_1", json=intent)
        call_command("sync_stripe", "--older-than-minutes=0")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_message == "Your card was declined."
    assert "1 payment(s) updated" in capsys.readouterr().out
