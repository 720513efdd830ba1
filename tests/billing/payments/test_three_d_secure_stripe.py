"""3-D Secure with Stripe at the HTTP boundary: confirming a waiting charge, releasing it
after the timeout (PaymentIntent cancel), and the race where it succeeded meanwhile."""

import datetime
from urllib.parse import parse_qs

import pytest
import requests
import responses
import time_machine
from django.test import Client

from billing.collections import tasks
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments import tasks as payment_tasks
from billing.payments.models import PaymentKind, PaymentMethod, PaymentStatus
from billing.payments.providers import AuthenticationRequired
from core.audit import AuditEntry
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.stripe.helpers import (
    deliver_twice_shuffled,
    event,
    load,
    use_stripe,
)

pytestmark = pytest.mark.django_db

API = "https://api.stripe.com"
START = datetime.datetime(2026, 1, 1, 9, 0, tzinfo=datetime.UTC)
HOSTED_3DS = "https://hooks.stripe.com/3d_secure_2/hosted?merchant=acct_1&payment_intent=pi_os_1"


@pytest.fixture(autouse=True)
def _stripe(settings):
    use_stripe(settings, api_base=API)
    settings.REQUIRES_ACTION_TIMEOUT_HOURS = 24


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def invoice(customer, clock):
    customer.stripe_customer_id = "cus_known"
    customer.save()
    PaymentMethod.objects.create(
        customer=customer,
        provider="stripe",
        provider_id="pm_card_3ds",
        brand="visa",
        last4="3184",
        exp_month=8,
        exp_year=2030,
        is_default=True,
    )
    return make_invoice(customer=customer, price="123.45")


@pytest.fixture
def member(owner):
    client = Client()
    client.force_login(owner)
    return client


def _form(call) -> dict:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def _intent(invoice, payment_id, *, id_, status, **kw):
    fields = dict(
        id=id_,
        amount=to_minor_units(invoice.total),
        amount_received=to_minor_units(invoice.total) if status == "succeeded" else 0,
        currency="eur",
        customer="cus_known",
        metadata={
            "invoice_id": str(invoice.pk),
            "invoice_number": invoice.number,
            "payment_id": str(payment_id),
        },
        status=status,
        latest_charge=None,
        last_payment_error=None,
        next_action=None,
    )
    return load("payment_intent", **{**fields, **kw})


def _succeeded(invoice, payment_id, id_):
    return _intent(
        invoice,
        payment_id,
        id_=id_,
        status="succeeded",
        latest_charge=load("charge", id=f"ch_{id_}", amount=to_minor_units(invoice.total)),
    )


def _off_session_needs_authentication(invoice, http):
    """The automatic charge: Stripe answers 402 authentication_required (Stripe's shape:
    the PaymentIntent is left requires_payment_method, with no page to confirm on)."""
    intent = _intent(
        invoice,
        0,
        id_="pi_3ds_1",
        status="requires_payment_method",
        last_payment_error={"code": "authentication_required", "type": "card_error"},
    )
    http.post(
        f"{API}/v1/payment_intents",
        status=402,
        json={
            "error": {
                "type": "card_error",
                "code": "authentication_required",
                "decline_code": "authentication_required",
                "message": "Your card was declined. This transaction requires authentication.",
                "payment_intent": intent,
            }
        },
    )
    payment = payments.invoice_charge_automatically(invoice_id=invoice.pk, actor="calendar")
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    assert payment.provider_payment_id == "pi_3ds_1"
    return payment


def test_a_stale_charge_is_cancelled_at_stripe_and_the_next_automatic_charge_runs(
    invoice, http, clock, client
):
    payment = _off_session_needs_authentication(invoice, http)
    clock.move_to(START + datetime.timedelta(hours=23))
    assert payment_tasks.release_stale_payment_actions() == 0
    assert len(http.calls) == 1

    clock.move_to(START + datetime.timedelta(hours=25))
    http.post(
        f"{API}/v1/payment_intents/pi_3ds_1/cancel",
        json=_intent(
            invoice, payment.pk, id_="pi_3ds_1", status="canceled", cancellation_reason="abandoned"
        ),
    )
    assert payment_tasks.release_stale_payment_actions() == 1
    cancel = http.calls[1]
    assert _form(cancel) == {"cancellation_reason": "abandoned"}
    assert cancel.request.headers["Idempotency-Key"] == f"{payment.idempotency_key}-cancel"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CANCELLED
    assert AuditEntry.objects.filter(action="payment.cancelled", object_id=str(payment.pk)).exists()
    assert payment_tasks.release_stale_payment_actions() == 0 and len(http.calls) == 2

    # The hourly retry sweep charges the invoice again, as attempt 2 under its own key.
    http.post(f"{API}/v1/payment_intents", json=_succeeded(invoice, 0, "pi_auto_2"))
    assert tasks.retry_failed_charges() == 1
    charge = http.calls[2]
    assert charge.request.headers["Idempotency-Key"] == f"invoice-{invoice.pk}-automatic-2"
    assert _form(charge)["off_session"] == "true"
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.PAID, invoice.total)

    # Stripe's events for both intents, twice and shuffled, change nothing more.
    events = [
        event(
            "payment_intent.canceled",
            _intent(invoice, payment.pk, id_="pi_3ds_1", status="canceled"),
        ),
        event("payment_intent.succeeded", _succeeded(invoice, payment.pk + 1, "pi_auto_2")),
    ]
    assert all(r.status_code == 200 for r in deliver_twice_shuffled(client, events))
    invoice.refresh_from_db()
    payment.refresh_from_db()
    assert invoice.amount_paid == invoice.total and payment.status == PaymentStatus.CANCELLED
    assert invoice.payments.filter(status=PaymentStatus.SUCCEEDED).count() == 1


def test_when_stripe_says_it_succeeded_meanwhile_the_success_is_applied(
    invoice, http, clock, client
):
    payment = _off_session_needs_authentication(invoice, http)
    clock.move_to(START + datetime.timedelta(hours=25))
    succeeded = _succeeded(invoice, payment.pk, "pi_3ds_1")
    http.post(
        f"{API}/v1/payment_intents/pi_3ds_1/cancel",
        status=400,
        json={
            "error": {
                "type": "invalid_request_error",
                "code": "payment_intent_unexpected_state",
                "message": "You cannot cancel this PaymentIntent because it has a status of "
                "succeeded. Only a PaymentIntent with one of the following statuses may be "
                "canceled: requires_payment_method, requires_capture, requires_confirmation, "
                "requires_action, processing.",
                "payment_intent": succeeded,
            }
        },
    )
    http.get(f"{API}/v1/payment_intents/pi_3ds_1", json=succeeded)
    assert payment_tasks.release_stale_payment_actions() == 1
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.provider_charge_id == "ch_pi_3ds_1"
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.PAID, invoice.total)
    assert not AuditEntry.objects.filter(action="payment.cancelled").exists()

    late = [
        event("payment_intent.succeeded", succeeded),
        event("payment_intent.requires_action", {**succeeded, "status": "requires_action"}),
    ]
    assert all(r.status_code == 200 for r in deliver_twice_shuffled(client, late))
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED and invoice.amount_paid == invoice.total
    assert not payment.is_duplicate


def test_stripe_unreachable_leaves_the_charge_waiting_for_the_next_run(invoice, http, clock):
    payment = _off_session_needs_authentication(invoice, http)
    clock.move_to(START + datetime.timedelta(hours=25))
    http.post(
        f"{API}/v1/payment_intents/pi_3ds_1/cancel",
        body=requests.exceptions.ConnectionError("unreachable"),
    )
    assert payment_tasks.release_stale_payment_actions() == 0
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REQUIRES_ACTION


def test_confirm_payment_sends_an_on_session_charge_to_stripes_3ds_page(
    invoice, http, member, client
):
    waiting = _intent(
        invoice,
        0,
        id_="pi_os_1",
        status="requires_action",
        next_action={
            "type": "redirect_to_url",
            "redirect_to_url": {"url": HOSTED_3DS, "return_url": "http://testserver/"},
        },
    )
    http.post(f"{API}/v1/payment_intents", json=waiting)
    with pytest.raises(AuthenticationRequired):
        payments.invoice_pay_with_saved_method(
            invoice_id=invoice.pk, payment_method_id="pm_card_3ds", off_session=False, actor="api"
        )
    payment = invoice.payments.get()
    assert (payment.kind, payment.status) == (PaymentKind.API, PaymentStatus.REQUIRES_ACTION)
    back = f"/invoices/{invoice.number}/payments/{payment.pk}/confirmed/"
    assert _form(http.calls[0])["return_url"] == f"http://testserver{back}"

    page = member.get(f"/invoices/{invoice.number}/")
    assert b"Confirm payment" in page.content
    http.get(f"{API}/v1/payment_intents/pi_os_1", json=waiting)
    to_bank = member.post(f"/invoices/{invoice.number}/payments/{payment.pk}/confirm/")
    assert to_bank.status_code == 303 and to_bank["Location"] == HOSTED_3DS

    http.get(f"{API}/v1/payment_intents/pi_os_1", json=_succeeded(invoice, payment.pk, "pi_os_1"))
    landing = member.get(back)
    assert landing.status_code == 302 and landing["Location"] == f"/invoices/{invoice.number}/"
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.PAID, invoice.total)
    done = [event("payment_intent.succeeded", _succeeded(invoice, payment.pk, "pi_os_1"))]
    assert all(r.status_code == 200 for r in deliver_twice_shuffled(client, done))
    invoice.refresh_from_db()
    assert invoice.amount_paid == invoice.total and invoice.payments.count() == 1


def test_confirm_payment_of_an_off_session_charge_goes_to_a_new_checkout(
    invoice, http, member, client
):
    payment = _off_session_needs_authentication(invoice, http)
    http.get(
        f"{API}/v1/payment_intents/pi_3ds_1",
        json=_intent(invoice, payment.pk, id_="pi_3ds_1", status="requires_payment_method"),
    )
    http.post(
        f"{API}/v1/payment_intents/pi_3ds_1/cancel",
        json=_intent(invoice, payment.pk, id_="pi_3ds_1", status="canceled"),
    )
    session = load("checkout_session", id="cs_confirm_1", status="open")
    http.post(f"{API}/v1/checkout/sessions", json=session)
    response = member.post(f"/invoices/{invoice.number}/payments/{payment.pk}/confirm/")
    assert response.status_code == 303 and response["Location"] == session["url"]

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CANCELLED
    checkout = invoice.payments.get(kind=PaymentKind.CHECKOUT)
    assert checkout.amount == invoice.amount_remaining
    sent = _form(http.calls[-1])
    assert sent["line_items[0][price_data][unit_amount]"] == str(to_minor_units(invoice.total))
    assert sent["success_url"] == f"http://testserver/invoices/{invoice.number}/pay/done/"

    completed = load(
        "checkout_session",
        id="cs_confirm_1",
        payment_status="paid",
        status="complete",
        payment_intent="pi_checkout_1",
        amount_total=to_minor_units(invoice.total),
        currency=invoice.currency.lower(),
        customer=invoice.customer.stripe_customer_id,
        metadata={"invoice_id": str(invoice.pk), "payment_id": str(checkout.pk)},
    )
    events = [event("checkout.session.completed", completed)]
    assert all(r.status_code == 200 for r in deliver_twice_shuffled(client, events))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.PAID, invoice.total)
    # The released attempt can no longer be confirmed.
    again = member.post(f"/invoices/{invoice.number}/payments/{payment.pk}/confirm/", follow=True)
    assert b"no longer waits" in again.content
