"""Reminder e-mails, each sent exactly once, asserted through mail.outbox."""

import datetime

import pytest
import time_machine
from django.core import mail

from billing.collections.notifications import billing_contacts
from billing.collections.tasks import send_reminders
from billing.invoices.links import pay_url
from billing.payments import services as payment_services
from billing.payments.models import PaymentKind
from tests.factories import MembershipFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice(customer):
    MembershipFactory(customer=customer, user__email="owner@example.com")
    MembershipFactory(customer=customer, user__email="money@example.com", role="billing")
    MembershipFactory(customer=customer, user__email="viewer@example.com", role="viewer")
    invoice = make_invoice(make_contract(customer, blocks=2))
    mail.outbox.clear()
    return invoice


def _at(day: int):
    return time_machine.travel(datetime.datetime(2026, 1, day, 8), tick=False)


def _remind_twice(capture) -> list:
    before = len(mail.outbox)
    with capture(execute=True):
        send_reminders()
        send_reminders()
    return mail.outbox[before:]


def test_billing_contacts_are_customer_owner_and_billing_members(invoice):
    assert set(billing_contacts(invoice.customer)) == {
        invoice.customer.email,
        "owner@example.com",
        "money@example.com",
    }


def test_overdue_then_three_and_one_day_warnings_each_once(
    invoice, django_capture_on_commit_callbacks
):
    contract = invoice.contract
    blocks = ", ".join(b.prefix for b in contract.blocks.order_by("first_address"))
    with _at(15):
        assert _remind_twice(django_capture_on_commit_callbacks) == []  # due today
    with _at(16):
        (overdue,) = _remind_twice(django_capture_on_commit_callbacks)
    assert overdue.subject == f"Invoice {invoice.number} is overdue"
    assert "22 January 2026" in overdue.body
    with _at(18):
        assert _remind_twice(django_capture_on_commit_callbacks) == []
    with _at(19):
        (warning,) = _remind_twice(django_capture_on_commit_callbacks)
    sentence = (
        f"Contract {contract.reference} and blocks {blocks} will be cancelled on 22 January 2026."
    )
    assert sentence in warning.body
    assert pay_url(invoice).rsplit(":", 2)[0] in warning.body
    html = warning.alternatives[0][0]
    assert "Pay online" in html and "22 January 2026" in html
    with _at(20):
        assert _remind_twice(django_capture_on_commit_callbacks) == []
    with _at(21):
        (last,) = _remind_twice(django_capture_on_commit_callbacks)
    assert "will be cancelled on 22 January 2026" in last.subject
    assert set(last.to) == set(billing_contacts(invoice.customer))


def test_missed_three_day_window_sends_only_the_one_day_warning(
    invoice, django_capture_on_commit_callbacks
):
    with _at(21):
        sent = _remind_twice(django_capture_on_commit_callbacks)
    assert len(sent) == 2  # overdue + the 1-day warning, not the 3-day one as well
    assert sum("will be cancelled" in m.subject for m in sent) == 1


def test_receipt_once_when_paid(invoice, django_capture_on_commit_callbacks):
    with _at(10), django_capture_on_commit_callbacks(execute=True):
        payment = payment_services.payment_create(
            invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
        )
        payment_services.payment_record_success(payment_id=payment.pk, actor="t")
    assert [m.subject for m in mail.outbox] == [f"Receipt for invoice {invoice.number}"]
    with _at(11):
        assert _remind_twice(django_capture_on_commit_callbacks) == []
    with _at(25):
        assert _remind_twice(django_capture_on_commit_callbacks) == []


def test_payment_failed_once(invoice, django_capture_on_commit_callbacks):
    with _at(2), django_capture_on_commit_callbacks(execute=True):
        payment = payment_services.payment_create(
            invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
        )
        payment_services.payment_record_failure(
            payment_id=payment.pk, actor="t", code="card_declined", message="Declined."
        )
        payment_services.payment_record_failure(
            payment_id=payment.pk, actor="t", code="card_declined", message="Declined."
        )
    assert [m.subject for m in mail.outbox] == [f"Payment for invoice {invoice.number} failed"]
    assert "Declined." in mail.outbox[0].body
    assert pay_url(invoice).rsplit(":", 2)[0] in mail.outbox[0].body
    with _at(3):
        assert _remind_twice(django_capture_on_commit_callbacks) == []


def test_sweep_catches_up_a_receipt_whose_queuing_failed(invoice, monkeypatch):
    with _at(10):
        payment = payment_services.payment_create(
            invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
        )
        payment_services.payment_record_success(
            payment_id=payment.pk, actor="t"
        )  # on_commit never ran
    assert mail.outbox == []
    with _at(10):
        send_reminders()
        send_reminders()
    assert [m.subject for m in mail.outbox] == [f"Receipt for invoice {invoice.number}"]


def test_a_german_customer_gets_german_e_mails_with_german_money_and_dates(
    invoice, django_capture_on_commit_callbacks
):
    customer = invoice.customer
    customer.document_language = "de"
    customer.save()
    with _at(16):
        (overdue,) = _remind_twice(django_capture_on_commit_callbacks)
    assert overdue.subject == f"Rechnung {invoice.number} ist überfällig"
    assert overdue.body.startswith(f"Guten Tag {customer.name},")
    amount = "238,00\xa0€"  # two blocks at 100.00 EUR plus 19 % VAT
    assert f"Rechnung {invoice.number} über {amount} war am 15. Januar 2026 fällig" in overdue.body
    assert "am 22. Januar 2026 gekündigt" in overdue.body
    assert "Online bezahlen: " + pay_url(invoice).rsplit(":", 2)[0] in overdue.body
    html = overdue.alternatives[0][0]
    assert '<html lang="de">' in html and "Online bezahlen" in html
    with _at(19):
        (warning,) = _remind_twice(django_capture_on_commit_callbacks)
    assert warning.subject == (
        f"Vertrag {invoice.contract.reference} wird am 22. Januar 2026 gekündigt, "
        f"wenn Rechnung {invoice.number} nicht bezahlt wird"
    )


def test_english_e_mails_write_money_the_english_way(invoice, django_capture_on_commit_callbacks):
    with _at(16):
        (overdue,) = _remind_twice(django_capture_on_commit_callbacks)
    assert f"invoice {invoice.number} over €238.00 was due on 15 January 2026" in overdue.body
    assert '<html lang="en">' in overdue.alternatives[0][0]
