"""E-mails across a crash: the mail server accepted the message, then the database was lost
before the claim committed. The notification is sent again (at least once), with the same
Message-ID, so the receiving side shows it once (billing.collections.notifications)."""

import psycopg
import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.db import connection

from billing.collections import notifications
from billing.collections import tasks as collection_tasks
from billing.payments import services as payments
from config.celery import app
from core.models import AuditEntry
from tests.factories import make_invoice

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend"),
]


def _kill_my_database_connection() -> None:
    pid = connection.connection.info.backend_pid
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname=db["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_receipt_accepted_by_smtp_before_the_claim_committed_is_resent_with_its_message_id(
    customer, monkeypatch, settings
):
    invoice = make_invoice(customer=customer)
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind="checkout", actor="t"
    )
    payments.payment_record_success(payment_id=payment.pk, actor="t")
    AuditEntry.objects.filter(action__startswith="notification.").delete()
    mail.outbox.clear()

    real_send = EmailMessage.send
    crashes = []

    def accepted_then_database_lost(self, *args, **kwargs):
        sent = real_send(self, *args, **kwargs)  # the mail server has it now
        if not crashes:
            crashes.append(self.extra_headers["Message-ID"])
            _kill_my_database_connection()  # ... and the claim's commit fails
        return sent

    monkeypatch.setattr(EmailMessage, "send", accepted_then_database_lost)
    before = app.conf.task_eager_propagates
    app.conf.CELERY_TASK_EAGER_PROPAGATES = False
    try:
        result = collection_tasks.notify_invoice_paid.apply(args=[invoice.pk])
    finally:
        app.conf.CELERY_TASK_EAGER_PROPAGATES = before
    assert result.successful() and result.result is True
    assert crashes, "the crash happened after the send"

    receipts = [m for m in mail.outbox if m.subject.startswith("Receipt")]
    assert len(receipts) == 2, "at least once: sent again after the lost claim"
    ids = {m.extra_headers["Message-ID"] for m in receipts}
    assert ids == {notifications.notification_message_id(notifications.RECEIPT, invoice)}
    assert ids == {f"<notification.receipt.invoices-invoice.{invoice.pk}@testserver>"}
    assert all(m.message()["Message-ID"] == crashes[0] for m in receipts)
    claim = AuditEntry.objects.get(action="notification.receipt")
    assert claim.after["message_id"] == crashes[0]

    # Claimed now: running again sends nothing.
    assert collection_tasks.notify_invoice_paid.apply(args=[invoice.pk]).result is False
    assert len([m for m in mail.outbox if m.subject.startswith("Receipt")]) == 2


def test_staff_alerts_carry_a_stable_message_id(customer, settings):
    from billing.payments.models import Refund, RefundStatus

    settings.ADMINS = [("Staff", "staff@example.com")]
    invoice = make_invoice(customer=customer)
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind="checkout", actor="t"
    )
    payments.payment_record_success(payment_id=payment.pk, actor="t", provider_charge_id="ch_1")
    refund = Refund.objects.create(
        payment=payment,
        amount=payment.amount,
        idempotency_key="r-1",
        status=RefundStatus.FAILED,
        failure_reason="expired_or_canceled_card",
    )
    mail.outbox.clear()
    assert notifications.notify_staff_refund_failed(refund_id=refund.pk) is True
    (alert,) = mail.outbox
    assert alert.to == ["staff@example.com"]
    assert alert.subject.startswith(settings.EMAIL_SUBJECT_PREFIX + "Refund of")
    assert alert.extra_headers["Message-ID"] == (
        f"<notification.refund_failed.payments-refund.{refund.pk}@testserver>"
    )
