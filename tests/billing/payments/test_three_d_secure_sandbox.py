"""A saved-card charge left waiting for 3-D Secure: the customer confirms it from the invoice
page (the sandbox's 3-D Secure page), or it is released after REQUIRES_ACTION_TIMEOUT_HOURS
so the next automatic charge goes ahead."""

import datetime
import re

import pytest
import time_machine
from django.test import Client

from billing.collections import tasks
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments import tasks as payment_tasks
from billing.payments.models import PaymentKind, PaymentMethod, PaymentStatus
from contracts.models import Role
from core.audit import AuditEntry
from core.errors import DomainError
from tests.factories import MembershipFactory, PaymentMethodFactory, make_invoice

pytestmark = pytest.mark.django_db

START = datetime.datetime(2026, 1, 1, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True
    settings.REQUIRES_ACTION_TIMEOUT_HOURS = 24


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def waiting(customer, clock):
    """An invoice whose automatic charge of the default (3-D Secure) card waits for the bank."""
    card = PaymentMethodFactory(customer=customer, last4="3184")
    invoice = make_invoice(customer=customer)
    payment = payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="calendar")
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    # While it waits, every further charge is refused: the defect this file is about.
    assert payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="calendar") is None
    with pytest.raises(DomainError, match="already under way"):
        payments.invoice_pay_with_saved_method(
            invoice_id=invoice.pk,
            payment_method_id=card.provider_id,
            off_session=True,
            actor="api",
        )
    return invoice, payment


@pytest.fixture
def member(owner):
    client = Client()
    client.force_login(owner)
    return client


def _confirm_url(invoice, payment):
    return f"/invoices/{invoice.number}/payments/{payment.pk}/confirm/"


def test_the_invoice_page_offers_confirm_payment_and_approval_pays(waiting, member):
    invoice, payment = waiting
    page = member.get(f"/invoices/{invoice.number}/")
    assert page.status_code == 200
    assert b"Confirm payment" in page.content
    assert _confirm_url(invoice, payment).encode() in page.content

    to_bank = member.post(_confirm_url(invoice, payment))
    assert to_bank.status_code == 303
    assert re.fullmatch(r"/sandbox/confirm/[^/]+/", to_bank["Location"])
    bank = member.get(to_bank["Location"])
    assert bank.status_code == 200
    assert b"TEST MODE" in bank.content and b"Approve" in bank.content
    assert b"test card" not in bank.content  # this page offers no cards to pick

    back = member.post(to_bank["Location"], {"action": "approve"})
    assert back.status_code == 303
    assert back["Location"].endswith(f"/invoices/{invoice.number}/payments/{payment.pk}/confirmed/")
    landing = member.get(back["Location"])
    assert landing.status_code == 302 and landing["Location"] == f"/invoices/{invoice.number}/"

    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.PAID, invoice.total)
    assert invoice.payments.count() == 1
    final = member.get(landing["Location"])
    assert b"went through" in final.content and b"Confirm payment" not in final.content
    # Approving twice (back button) charges nothing more.
    assert member.post(to_bank["Location"], {"action": "approve"}).status_code == 302
    invoice.refresh_from_db()
    assert invoice.amount_paid == invoice.total and invoice.payments.count() == 1


def test_denying_fails_the_attempt_and_frees_the_invoice_for_the_next_charge(
    waiting, member, customer
):
    invoice, payment = waiting
    to_bank = member.post(_confirm_url(invoice, payment))
    back = member.post(to_bank["Location"], {"action": "deny"})
    landing = member.get(back["Location"], follow=True)
    assert b"authentication failed" in landing.content
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0

    PaymentMethod.objects.filter(customer=customer).delete()
    PaymentMethodFactory(customer=customer, last4="4242")
    retry = payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="calendar")
    assert retry is not None and retry.status == PaymentStatus.SUCCEEDED
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_only_paying_members_of_the_invoices_customer_may_confirm(
    waiting, customer, other_customer
):
    invoice, payment = waiting
    stranger = Client()
    stranger.force_login(MembershipFactory(customer=other_customer).user)
    assert stranger.post(_confirm_url(invoice, payment)).status_code == 404
    assert stranger.get(f"{_confirm_url(invoice, payment)[:-8]}confirmed/").status_code == 404
    viewer = Client()
    viewer.force_login(MembershipFactory(customer=customer, role=Role.VIEWER).user)
    assert viewer.post(_confirm_url(invoice, payment)).status_code == 403
    assert b"Confirm payment" not in viewer.get(f"/invoices/{invoice.number}/").content
    anonymous = Client()
    assert anonymous.post(_confirm_url(invoice, payment)).status_code == 302  # to the login
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REQUIRES_ACTION


def test_a_waiting_charge_is_released_after_the_timeout_and_the_automatic_charge_runs(
    waiting, clock, customer, member
):
    invoice, payment = waiting
    to_bank = member.post(_confirm_url(invoice, payment))["Location"]

    clock.move_to(START + datetime.timedelta(hours=23))
    assert payment_tasks.release_stale_payment_actions() == 0
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REQUIRES_ACTION

    clock.move_to(START + datetime.timedelta(hours=25))
    assert payment_tasks.release_stale_payment_actions() == 1
    assert payment_tasks.release_stale_payment_actions() == 0  # a second tick changes nothing
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CANCELLED
    entry = AuditEntry.objects.get(action="payment.cancelled", object_id=str(payment.pk))
    assert entry.note == "3-D Secure not confirmed in time"

    # The bank's page opened before the release cannot take the money any more.
    assert member.post(to_bank, {"action": "approve"}).status_code == 410
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CANCELLED

    # The customer replaced the card; the hourly retry sweep charges it.
    PaymentMethod.objects.filter(customer=customer).delete()
    PaymentMethodFactory(customer=customer, last4="4242")
    assert tasks.retry_failed_charges() == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.PAID, invoice.total)
    retry = invoice.payments.get(status=PaymentStatus.SUCCEEDED)
    assert (retry.kind, retry.attempt) == (PaymentKind.AUTOMATIC, 2)


def test_the_released_charge_counts_in_the_retry_schedule(waiting, clock, customer):
    invoice, _payment = waiting
    clock.move_to(START + datetime.timedelta(hours=25))
    payment_tasks.release_stale_payment_actions()
    # Still the 3-D Secure card: the retry asks again, and is released again later.
    assert tasks.retry_failed_charges() == 1
    assert invoice.payments.filter(status=PaymentStatus.REQUIRES_ACTION).count() == 1
    assert tasks.retry_failed_charges() == 0  # that one is waiting now


def test_the_beat_schedule_runs_the_release_before_the_charge_retries():
    from config.celery import app

    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    release = schedule["payments.release_stale_payment_actions"]
    retries = schedule["collections.retry_failed_charges"]
    assert release.hour == retries.hour  # hourly
    assert min(release.minute) < min(retries.minute)


def test_paying_with_a_saved_3ds_card_on_the_pay_page_goes_straight_to_the_bank(customer, member):
    card = PaymentMethodFactory(customer=customer, last4="3184")
    invoice = make_invoice(customer=customer)
    to_bank = member.post(f"/invoices/{invoice.number}/pay/", {"payment_method": card.provider_id})
    assert to_bank.status_code == 303
    assert re.fullmatch(r"/sandbox/confirm/[^/]+/", to_bank["Location"])
    payment = invoice.payments.get()
    assert (payment.kind, payment.status) == (PaymentKind.API, PaymentStatus.REQUIRES_ACTION)
    back = member.post(to_bank["Location"], {"action": "approve"})
    assert member.get(back["Location"]).status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.payments.count() == 1
