from decimal import Decimal

import pytest

from billing.invoices import services as invoice_services
from billing.invoices.models import InvoiceStatus
from billing.payments import services, signals
from billing.payments.models import PaymentKind, PaymentStatus
from contracts.models import ContractStatus
from contracts.services import contract_mark_past_due
from core.errors import DomainError
from core.models import AuditEntry
from tests.factories import make_invoice

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def refunds_requested():
    seen = []

    def receiver(sender, payment_id, amount, **kw):
        seen.append((payment_id, amount))

    signals.payment_needs_refund.connect(receiver)
    yield seen
    signals.payment_needs_refund.disconnect(receiver)


def _pay(invoice, **kw):
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.API, actor="t"
    )
    return services.payment_record_success(payment_id=payment.pk, actor="t", **kw)


def test_success_pays_the_invoice_once_even_when_recorded_twice(customer, refunds_requested):
    invoice = make_invoice(customer=customer)
    payment = _pay(invoice, brand="visa", last4="4242")
    services.payment_record_success(payment_id=payment.pk, actor="t")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.amount_paid == invoice.total
    assert invoice.amount_remaining == 0
    assert refunds_requested == []
    assert AuditEntry.objects.filter(action="invoice.paid", object_id=str(invoice.pk)).count() == 1


def test_second_payment_for_a_paid_invoice_is_flagged_and_sent_back(customer, refunds_requested):
    invoice = make_invoice(customer=customer)
    first = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    second = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
    )
    services.payment_record_success(payment_id=first.pk, actor="t")
    services.payment_record_success(payment_id=second.pk, actor="t")
    second.refresh_from_db()
    invoice.refresh_from_db()
    assert invoice.amount_paid == invoice.total
    assert second.is_duplicate and second.status == PaymentStatus.SUCCEEDED
    assert refunds_requested == [(second.pk, second.amount)]


def test_paying_a_void_invoice_is_refused(customer):
    invoice = make_invoice(customer=customer)
    invoice_services.invoice_void(invoice_id=invoice.pk, actor="t")
    with pytest.raises(DomainError, match="void and cannot be paid"):
        services.payment_create(
            invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.API, actor="t"
        )


def test_late_failure_never_undoes_a_success(customer):
    invoice = make_invoice(customer=customer)
    payment = _pay(invoice)
    services.payment_record_failure(
        payment_id=payment.pk, actor="t", code="card_declined", message="declined"
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED and payment.failure_code == ""


def test_failure_keeps_the_invoice_open_with_the_reason(customer):
    invoice = make_invoice(customer=customer)
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
    )
    services.payment_record_failure(
        payment_id=payment.pk, actor="t", code="card_declined", message="Your card was declined."
    )
    invoice.refresh_from_db()
    payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert (payment.status, payment.failure_message) == (
        PaymentStatus.FAILED,
        "Your card was declined.",
    )


def test_full_refund_moves_invoice_to_refund_and_partial_does_not(customer):
    full = make_invoice(customer=customer)
    payment = _pay(full)
    services.payment_record_refund(
        payment_id=payment.pk, amount=payment.amount, provider_refund_id="re_1", actor="t"
    )
    services.payment_record_refund(
        payment_id=payment.pk, amount=payment.amount, provider_refund_id="re_1", actor="t"
    )
    full.refresh_from_db()
    assert full.status == InvoiceStatus.REFUND and full.amount_refunded == full.amount_paid

    partial = make_invoice(customer=customer)
    payment = _pay(partial)
    services.payment_record_refund(
        payment_id=payment.pk, amount=Decimal("10"), provider_refund_id="re_2", actor="t"
    )
    partial.refresh_from_db()
    assert partial.status == InvoiceStatus.PAID and partial.amount_refunded == Decimal("10.00")
    with pytest.raises(DomainError, match="Cannot refund"):
        services.payment_record_refund(
            payment_id=payment.pk, amount=payment.amount, provider_refund_id="re_3", actor="t"
        )


def test_payment_restores_a_past_due_contract(customer):
    invoice = make_invoice(customer=customer)
    contract_mark_past_due(contract_id=invoice.contract_id, actor="t")
    _pay(invoice)
    invoice.contract.refresh_from_db()
    assert invoice.contract.status == ContractStatus.ACTIVE


def _start(invoice, kind, **kw):
    return services.payment_start_saved_method_charge(
        invoice_id=invoice.pk, provider="sandbox", kind=kind, actor="t", **kw
    )


def test_a_charge_rechecks_the_invoice_and_contract_under_the_lock(customer):
    """The callers look before they lock; what staff did meanwhile is seen under the lock."""
    from contracts.models import CancellationReason
    from contracts.services import contract_cancel

    written_off = make_invoice(customer=customer)
    invoice_services.invoice_mark_uncollectible(invoice_id=written_off.pk, actor="staff")
    with pytest.raises(DomainError) as refused:
        _start(written_off, PaymentKind.AUTOMATIC)
    assert refused.value.code == "invoice_not_payable"
    assert _start(written_off, PaymentKind.API).status == PaymentStatus.PENDING  # asked for

    cancelled = make_invoice(customer=customer)
    contract_cancel(
        contract_id=cancelled.contract_id, reason=CancellationReason.NON_PAYMENT, actor="staff"
    )
    for kind in (PaymentKind.AUTOMATIC, PaymentKind.API):
        with pytest.raises(DomainError) as refused:
            _start(cancelled, kind)
        assert refused.value.code == "invoice_not_payable"
    assert not cancelled.payments.exists()


def test_a_pending_attempt_is_resumed_only_by_the_same_kind_of_charge(customer):
    invoice = make_invoice(customer=customer)
    automatic = _start(invoice, PaymentKind.AUTOMATIC)
    assert automatic.status == PaymentStatus.PENDING
    assert _start(invoice, PaymentKind.AUTOMATIC) == automatic  # the retried task
    with pytest.raises(DomainError) as refused:
        _start(invoice, PaymentKind.API)  # the customer's card, not the default one
    assert refused.value.code == "payment_in_progress"
    assert invoice.payments.count() == 1


@pytest.mark.parametrize("answer", ["refused", "failed"])
def test_a_refund_the_provider_refuses_is_failed_once_and_audited(customer, monkeypatch, answer):
    from billing.payments import services as payments
    from billing.payments.models import RefundStatus
    from billing.payments.providers.base import PaymentError, RefundOutcome
    from billing.payments.providers.sandbox import SandboxProvider

    invoice = make_invoice(customer=customer)
    payment = _pay(invoice, provider_payment_id="pi_sandbox_refund_1")

    def refund_create(self, *, payment, amount_minor, idempotency_key, reason):
        if answer == "refused":
            raise PaymentError("Charge already disputed.", code="charge_disputed")
        return RefundOutcome(id="re_failed_1", status="failed", amount=Decimal(amount_minor) / 100)

    monkeypatch.setattr(SandboxProvider, "refund_create", refund_create)
    if answer == "refused":
        with pytest.raises(PaymentError):
            payments.payment_refund(payment_id=payment.pk, amount=None, actor="staff")
    else:
        payments.payment_refund(payment_id=payment.pk, amount=None, actor="staff")
    (refund,) = payment.refunds.all()
    assert refund.status == RefundStatus.FAILED
    assert AuditEntry.objects.filter(action="refund.failed", object_id=str(refund.pk)).count() == 1
    payment.refresh_from_db()
    assert payment.amount_refunded == 0 and payment.status == PaymentStatus.SUCCEEDED
