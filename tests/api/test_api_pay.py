"""POST /api/invoices/<id>/pay through the sandbox provider: every answer of the seed page."""

import json

import pytest
from django.db import connection

from billing import services
from billing.models import InvoiceStatus, Payment, PaymentMethod, PaymentStatus
from billing.providers import ProviderUnavailable
from billing.providers.sandbox import SandboxProvider
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
        services.invoice_record_out_of_band_payment(invoice_id=invoice.pk, actor="t")
    if prepare == "void":
        services.invoice_void(invoice_id=invoice.pk, actor="t")
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
