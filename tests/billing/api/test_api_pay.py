"""POST /api/invoices/<id>/pay through the sandbox provider: every answer of the seed page."""

import datetime
import json

import pytest
import time_machine
from django.db import connection

from billing.invoices import services as invoice_services
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import Payment, PaymentMethod, PaymentStatus
from billing.payments.providers import CardDeclined, ProviderUnavailable, sandbox
from billing.payments.providers.sandbox import SandboxProvider
from contracts.models import Role
from tests.factories import MembershipFactory, PaymentMethodFactory, make_invoice
from tests.threads import run_together

pytestmark = pytest.mark.django_db


def _card(customer, last4: str) -> PaymentMethod:
    # Not the default card: the automatic charge at finalisation must not pay first.
    return PaymentMethodFactory(customer=customer, last4=last4, is_default=False)


@pytest.fixture
def payer(customer, make_token):
    membership = MembershipFactory(customer=customer, role=Role.BILLING)
    return make_token(membership)[1]


@pytest.fixture
def pay(api, payer):
    def call(invoice, body, *, token=None, key=None, raw=None):
        headers = {"Idempotency-Key": key} if key else {}
        data = raw if raw is not None else json.dumps(body)
        return api(
            "post",
            f"/api/invoices/in_{invoice.pk}/pay",
            token or payer,
            data=data,
            content_type="application/json",
            headers=headers,
        )

    return call


def test_pay_charges_the_method_and_answers_the_invoice(customer, pay, assert_invoice_schema):
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    body = assert_invoice_schema(
        pay(invoice, {"payment_method": card.provider_id, "expand": ["customer"]}).json()
    )
    assert body["status"] == "paid" and body["paid"] is True
    assert body["amount_paid"] == body["total"] and body["amount_remaining"] == 0
    assert body["customer"]["id"] == f"cus_{customer.pk}"
    payment = Payment.objects.get(invoice=invoice)
    assert (payment.status, payment.kind, payment.method_last4) == ("succeeded", "api", "4242")


def test_decline_is_402_and_the_invoice_stays_open(customer, pay, assert_error_schema):
    card = _card(customer, "0002")
    invoice = make_invoice(customer=customer)
    error = assert_error_schema(
        pay(invoice, {"payment_method": card.provider_id}), 402, "card_declined"
    )
    assert error["type"] == "card_error"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert Payment.objects.get(invoice=invoice).status == PaymentStatus.FAILED


def test_three_d_secure_off_session_is_402_authentication_required(
    customer, pay, assert_error_schema
):
    card = _card(customer, "3184")
    invoice = make_invoice(customer=customer)
    assert_error_schema(
        pay(invoice, {"payment_method": card.provider_id, "off_session": True}),
        402,
        "authentication_required",
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN


def test_provider_down_is_503_and_nothing_is_paid(customer, pay, assert_error_schema, monkeypatch):
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)

    def down(self, **kw):
        raise ProviderUnavailable()

    monkeypatch.setattr(SandboxProvider, "charge_saved_method", down)
    assert_error_schema(
        pay(invoice, {"payment_method": card.provider_id}), 503, "provider_unavailable"
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "payment_method", "parameter_missing"),
        ({"payment_method": 42}, "payment_method", "parameter_invalid"),
        ({"payment_method": ""}, "payment_method", "parameter_invalid"),
        ({"payment_method": "pm_nope"}, "payment_method", "resource_missing"),
        ({"payment_method": "PM", "off_session": "yes"}, "off_session", "parameter_invalid"),
        ({"payment_method": "PM", "expand": ["lines"]}, "expand", "parameter_invalid"),
        ({"payment_method": "PM", "expand": "customer"}, "expand", "parameter_invalid"),
        ({"payment_method": "PM", "amount": 1}, "amount", "parameter_unknown"),
    ],
)
def test_invalid_bodies_are_400_and_charge_nothing(
    customer, pay, assert_error_schema, body, param, code
):
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    if body.get("payment_method") == "PM":
        body["payment_method"] = card.provider_id
    error = assert_error_schema(pay(invoice, body), 400, code)
    assert error["param"] == param
    assert not Payment.objects.exists()


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", "null"])
def test_unparseable_bodies_are_400(customer, pay, assert_error_schema, raw):
    invoice = make_invoice(customer=customer)
    assert_error_schema(pay(invoice, None, raw=raw), 400)


def test_another_customers_payment_method_is_refused(
    customer, other_customer, pay, assert_error_schema
):
    theirs = _card(other_customer, "4242")
    invoice = make_invoice(customer=customer)
    assert_error_schema(
        pay(invoice, {"payment_method": theirs.provider_id}), 400, "resource_missing"
    )
    assert not Payment.objects.exists()


def test_another_customers_invoice_is_404(customer, other_customer, pay, assert_error_schema):
    card = _card(customer, "4242")
    foreign = make_invoice(customer=other_customer)
    assert_error_schema(pay(foreign, {"payment_method": card.provider_id}), 404, "resource_missing")
    assert not Payment.objects.exists()


@pytest.mark.parametrize(
    ("prepare", "code"),
    [
        ("paid", "invoice_already_paid"),
        ("void", "invoice_void"),
        ("draft", "invoice_draft"),
    ],
)
def test_unpayable_invoices_are_409_with_a_code(customer, pay, assert_error_schema, prepare, code):
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer, finalize=prepare != "draft")
    if prepare == "paid":
        payments.invoice_record_out_of_band_payment(invoice_id=invoice.pk, actor="t")
    if prepare == "void":
        invoice_services.invoice_void(invoice_id=invoice.pk, actor="t")
    before = Payment.objects.count()
    assert_error_schema(pay(invoice, {"payment_method": card.provider_id}), 409, code)
    assert Payment.objects.count() == before


def test_idempotency_key_replays_the_first_answer_without_charging_again(customer, pay):
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    body = {"payment_method": card.provider_id}
    first = pay(invoice, body, key="order-1")
    second = pay(invoice, body, key="order-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Payment.objects.filter(invoice=invoice).count() == 1


def test_idempotency_key_with_another_body_is_refused(customer, pay, assert_error_schema):
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    pay(invoice, {"payment_method": card.provider_id}, key="k")
    error = assert_error_schema(
        pay(invoice, {"payment_method": card.provider_id, "off_session": True}, key="k"), 400
    )
    assert error["type"] == "idempotency_error"


def test_a_declined_answer_is_replayed_too(customer, pay):
    card = _card(customer, "0002")
    invoice = make_invoice(customer=customer)
    assert pay(invoice, {"payment_method": card.provider_id}, key="d").status_code == 402
    assert pay(invoice, {"payment_method": card.provider_id}, key="d").status_code == 402
    assert Payment.objects.filter(invoice=invoice).count() == 1


KEYED_AT = datetime.datetime(2026, 1, 5, 9, tzinfo=datetime.UTC)
KEY_LIFETIME = datetime.timedelta(hours=24)


def _bank_declines_first(monkeypatch) -> list[str]:
    """The card's bank declines the first charge and approves every later one."""
    real = SandboxProvider.charge_saved_method
    calls: list[str] = []

    def bank(self, **kw):
        calls.append(kw["payment"].idempotency_key)
        if len(calls) == 1:
            raise CardDeclined("Your card has insufficient funds.", code="insufficient_funds")
        return real(self, **kw)

    monkeypatch.setattr(SandboxProvider, "charge_saved_method", bank)
    return calls


def test_a_declined_request_repeated_within_24_hours_is_the_same_decline(
    customer, pay, assert_error_schema, monkeypatch
):
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    calls = _bank_declines_first(monkeypatch)
    body = {"payment_method": card.provider_id}
    with time_machine.travel(KEYED_AT, tick=False) as clock:
        first = pay(invoice, body, key="order-7")
        clock.shift(KEY_LIFETIME - datetime.timedelta(minutes=1))
        again = pay(invoice, body, key="order-7")
    error = assert_error_schema(again, 402, "card_declined")
    assert again.json() == first.json()
    assert error["message"] == "Your card has insufficient funds."
    assert again["Idempotent-Replayed"] == "true"
    assert len(calls) == 1
    assert Payment.objects.get(invoice=invoice).status == PaymentStatus.FAILED


def test_a_request_whose_attempt_was_declined_later_repeats_that_decline(
    customer, pay, assert_error_schema, monkeypatch
):
    """The first answer was 503 (not kept), and the provider then reported the pending
    attempt declined: the repeat within 24 hours answers that decline, not 200."""
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    body = {"payment_method": card.provider_id}
    real = SandboxProvider.charge_saved_method

    def down(self, **kw):
        raise ProviderUnavailable()

    with time_machine.travel(KEYED_AT, tick=False) as clock:
        monkeypatch.setattr(SandboxProvider, "charge_saved_method", down)
        assert_error_schema(pay(invoice, body, key="order-8"), 503, "provider_unavailable")
        attempt = Payment.objects.get(invoice=invoice)
        assert attempt.status == PaymentStatus.PENDING
        for _ in range(2):
            payments.provider_event_apply(
                sandbox.failure_event(
                    attempt.pk, code="card_declined", message="Your card was declined."
                ),
                actor="webhook",
            )
        monkeypatch.setattr(SandboxProvider, "charge_saved_method", real)
        clock.shift(datetime.timedelta(hours=1))
        again = pay(invoice, body, key="order-8")
    error = assert_error_schema(again, 402, "card_declined")
    assert error["message"] == "Your card was declined."
    assert Payment.objects.filter(invoice=invoice).count() == 1
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0


def test_a_declined_request_repeated_after_24_hours_is_a_new_charge(
    customer, pay, assert_invoice_schema, monkeypatch
):
    """As at Stripe, the key has expired: the repeat charges the card again (never a
    silent 200 with nothing charged)."""
    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    calls = _bank_declines_first(monkeypatch)
    body = {"payment_method": card.provider_id}
    with time_machine.travel(KEYED_AT, tick=False) as clock:
        assert pay(invoice, body, key="order-9").status_code == 402
        clock.shift(KEY_LIFETIME + datetime.timedelta(minutes=1))
        again = pay(invoice, body, key="order-9")
        assert again.status_code == 200, again.content
        replay = pay(invoice, body, key="order-9")
    assert_invoice_schema(again.json())
    assert again.json()["status"] == "paid"
    assert "Idempotent-Replayed" not in again
    assert replay.json() == again.json() and replay["Idempotent-Replayed"] == "true"
    assert len(calls) == 2 and calls[0] != calls[1]
    attempts = Payment.objects.filter(invoice=invoice).order_by("created_at")
    assert [p.status for p in attempts] == [PaymentStatus.FAILED, PaymentStatus.SUCCEEDED]
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total


def test_a_declined_request_repeated_after_24_hours_that_declines_again_is_402(
    customer, pay, assert_error_schema
):
    card = _card(customer, "0002")
    invoice = make_invoice(customer=customer)
    body = {"payment_method": card.provider_id}
    with time_machine.travel(KEYED_AT, tick=False) as clock:
        assert pay(invoice, body, key="order-10").status_code == 402
        clock.shift(KEY_LIFETIME + datetime.timedelta(minutes=1))
        again = pay(invoice, body, key="order-10")
    assert_error_schema(again, 402, "card_declined")
    assert "Idempotent-Replayed" not in again
    attempts = Payment.objects.filter(invoice=invoice)
    assert [p.status for p in attempts] == [PaymentStatus.FAILED] * 2
    assert len({p.idempotency_key for p in attempts}) == 2


def test_a_keyed_request_that_lost_the_race_answers_as_the_winner_did(customer, monkeypatch):
    """Its look-up ran before the other request's attempt existed; creating its own then
    hits the unique key, and it must answer the winner's decline, not a silent invoice."""
    card = _card(customer, "0002")
    invoice = make_invoice(customer=customer)

    def pay_once():
        return payments.invoice_pay_with_saved_method(
            invoice_id=invoice.pk,
            payment_method_id=card.provider_id,
            off_session=True,
            actor="api",
            idempotency_key="1:race",
        )

    with pytest.raises(CardDeclined) as won:
        pay_once()
    real = payments._api_attempt_key
    looks = []

    def too_early(invoice, base):
        looks.append(base)
        return (base, None) if len(looks) == 1 else real(invoice, base)

    monkeypatch.setattr(payments, "_api_attempt_key", too_early)
    with pytest.raises(CardDeclined) as lost:
        pay_once()
    assert len(looks) == 2
    assert (lost.value.code, lost.value.message) == (won.value.code, won.value.message)
    assert Payment.objects.filter(invoice=invoice).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_two_concurrent_pays_charge_once(customer, payer):
    from django.test import Client

    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)

    def hit(key):
        return Client().post(
            f"/api/invoices/in_{invoice.pk}/pay",
            data=json.dumps({"payment_method": card.provider_id}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {payer}", "Idempotency-Key": key},
        )

    responses, errors = run_together(lambda: hit("a"), lambda: hit("b"))
    assert errors == []
    statuses = [r.status_code for r in responses]
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total
    kept = Payment.objects.filter(
        invoice=invoice, status=PaymentStatus.SUCCEEDED, is_duplicate=False
    )
    assert kept.count() == 1
    assert sorted(statuses) in ([200, 200], [200, 409])


def test_the_seed_002_curl_gets_the_invoice_the_serializer_describes(
    client, customer, payer, assert_invoice_schema
):
    """shared/seeds/002's curl as written (headers, JSON body with all three fields); the
    answer is exactly the invoice object the API has always built for a paid invoice."""
    from billing.api.serializers import invoice_object

    card = _card(customer, "4242")
    invoice = make_invoice(customer=customer)
    response = client.generic(
        "POST",
        f"/api/invoices/in_{invoice.pk}/pay",
        data=json.dumps(
            {"payment_method": card.provider_id, "off_session": False, "expand": ["customer"]}
        ),
        content_type="application/json",
        headers={"Accept": "application/json", "Authorization": f"Bearer {payer}"},
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = assert_invoice_schema(response.json())
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert body == json.loads(
        json.dumps(invoice_object(invoice, expand={"customer"}, delinquent=False))
    )
