"""The Razorpay provider at the HTTP boundary (requests as Razorpay's API documents them,
answers in its documented shapes), the rule that picks it, and refunds from the admin."""

import base64
import datetime
import json
from decimal import Decimal

import pytest
import requests
import responses

from billing.invoices.models import InvoiceStatus
from billing.invoices.services import invoice_void
from billing.payments import services as payments
from billing.payments.models import PaymentKind, PaymentStatus, RefundStatus
from billing.payments.providers import (
    ProviderUnavailable,
    provider_for_currency,
    provider_for_invoice,
)
from core.money import to_minor_units
from tests.factories import make_invoice
from tests.fixtures.razorpay.helpers import (
    API,
    KEY_ID,
    KEY_SECRET,
    WEBHOOK_SECRET,
    event,
    link_paid,
    payment_entity,
    payment_link,
    post_event,
    refund_entity,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _razorpay(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.RAZORPAY_KEY_ID = KEY_ID
    settings.RAZORPAY_KEY_SECRET = KEY_SECRET
    settings.RAZORPAY_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.RAZORPAY_API_BASE = "https://api.razorpay.com"


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def invoice(customer):
    return make_invoice(customer=customer, currency="INR", price="4999.50")


def _link_answer(request, invoice, **overrides):
    sent = json.loads(request.body)
    payment = invoice.payments.get(pk=int(sent["notes"]["payment_id"]))
    payment.provider_checkout_id = None
    answer = payment_link(payment, id="plink_Fc8lXILABzQL7M", **overrides)
    answer.update(
        {
            k: sent[k]
            for k in ("amount", "reference_id", "description", "callback_url", "notes")
            if k in sent
        }
    )
    return answer


def test_pay_online_for_an_inr_invoice_creates_a_payment_link(client, owner, invoice, http):
    def create(request):
        return 200, {}, json.dumps(_link_answer(request, invoice))

    http.add_callback(responses.POST, f"{API}/payment_links", callback=create)
    client.force_login(owner)
    response = client.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 303
    assert response["Location"].startswith("https://rzp.io/i/")

    (call,) = http.calls
    expected_auth = base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()
    assert call.request.headers["Authorization"] == f"Basic {expected_auth}"
    sent = json.loads(call.request.body)
    payment = invoice.payments.get()
    assert (payment.provider, payment.kind, payment.status) == (
        "razorpay",
        PaymentKind.CHECKOUT,
        PaymentStatus.PENDING,
    )
    assert payment.provider_checkout_id == "plink_Fc8lXILABzQL7M"
    assert sent["amount"] == to_minor_units(invoice.amount_remaining)
    assert sent["currency"] == "INR"
    assert sent["accept_partial"] is False
    assert sent["reference_id"] == f"{invoice.number}-{payment.pk}"
    assert sent["description"] == f"Invoice {invoice.number}"
    assert sent["customer"]["name"] == invoice.customer.name
    assert sent["notify"] == {"sms": False, "email": False}
    assert sent["notes"] == {
        "invoice_id": str(invoice.pk),
        "invoice_number": invoice.number,
        "payment_id": str(payment.pk),
    }
    assert sent["callback_url"].endswith(f"/invoices/{invoice.number}/pay/done/")
    assert sent["callback_method"] == "get"
    assert sent["expire_by"] > 0


def test_a_second_click_reuses_the_open_link(client, owner, invoice, http):
    http.add_callback(
        responses.POST,
        f"{API}/payment_links",
        callback=lambda request: (200, {}, json.dumps(_link_answer(request, invoice))),
    )
    client.force_login(owner)
    first = client.post(f"/invoices/{invoice.number}/pay/")
    second = client.post(f"/invoices/{invoice.number}/pay/")
    assert first["Location"] == second["Location"]
    assert len(http.calls) == 1
    assert invoice.payments.count() == 1


def test_a_link_made_by_a_lost_answer_is_found_by_its_reference(client, owner, invoice, http):
    """Razorpay refuses a second link with the same reference_id; the retry of an attempt
    whose answer was lost finds the first link by it instead of failing."""
    http.post(
        f"{API}/payment_links",
        status=400,
        json={
            "error": {
                "code": "BAD_REQUEST_ERROR",
                "description": "reference_id already exists",
                "source": "business",
                "step": "payment_initiation",
                "reason": "input_validation_failed",
            }
        },
    )

    def listing(request):
        payment = invoice.payments.get()
        link = payment_link(payment, id="plink_ExistingLink01", short_url="https://rzp.io/i/abc")
        return 200, {}, json.dumps({"payment_links": [link]})

    http.add_callback(responses.GET, f"{API}/payment_links", callback=listing)
    client.force_login(owner)
    response = client.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 303
    assert response["Location"] == "https://rzp.io/i/abc"
    payment = invoice.payments.get()
    assert http.calls[1].request.params == {"reference_id": f"{invoice.number}-{payment.pk}"}
    assert payment.provider_checkout_id == "plink_ExistingLink01"


def test_razorpay_down_shows_try_again_and_charges_nothing(client, owner, invoice, http):
    http.post(f"{API}/payment_links", body=requests.ConnectionError("connection refused"))
    client.force_login(owner)
    response = client.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 503
    assert b"not reachable right now" in response.content
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN


def test_razorpay_5xx_is_unavailable_not_a_refusal(client, owner, invoice, http):
    http.post(
        f"{API}/payment_links",
        status=502,
        json={"error": {"code": "SERVER_ERROR", "description": "The server encountered an error"}},
    )
    client.force_login(owner)
    response = client.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 503


def _link_payment(invoice, link_id="plink_VoidMe000001"):
    payment = payments.payment_create(
        invoice_id=invoice.pk, provider="razorpay", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payment.provider_checkout_id = link_id
    payment.checkout_url = "https://rzp.io/i/void"
    payment.save()
    return payment


def test_voiding_the_invoice_cancels_its_open_link(invoice, http):
    payment = _link_payment(invoice)
    http.post(
        f"{API}/payment_links/plink_VoidMe000001/cancel",
        json=payment_link(payment, status="cancelled", cancelled_at=1591097270),
    )
    invoice_void(invoice_id=invoice.pk, actor="t", reason="wrong amount")
    assert payments.checkout_expire_for_invoice(invoice_id=invoice.pk, actor="t") == 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CANCELLED
    assert http.calls[0].request.body in (b"{}", "{}")


def test_cancelling_a_link_that_was_paid_meanwhile_is_not_an_error(invoice, http):
    payment = _link_payment(invoice, "plink_PaidMeanwhile")
    http.post(
        f"{API}/payment_links/plink_PaidMeanwhile/cancel",
        status=400,
        json={"error": {"code": "BAD_REQUEST_ERROR", "description": "Payment link is paid"}},
    )
    assert payments.checkout_expire_for_invoice(invoice_id=invoice.pk, actor="t") == 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CANCELLED


def test_reconciliation_reads_a_paid_link(invoice, http, time_machine):
    payment = _link_payment(invoice, "plink_Reconcile001")
    http.get(
        f"{API}/payment_links/plink_Reconcile001",
        json=payment_link(
            payment,
            status="paid",
            amount_paid=to_minor_units(payment.amount),
            payments=[
                {
                    "amount": to_minor_units(payment.amount),
                    "created_at": 1591097057,
                    "method": "netbanking",
                    "payment_id": "pay_Reconciled0001",
                    "plink_id": "plink_Reconcile001",
                    "status": "captured",
                    "updated_at": 1591097270,
                }
            ],
        ),
    )
    time_machine.move_to(payment.created_at + datetime.timedelta(minutes=10))
    assert payments.payments_reconcile(actor="t") == 1
    invoice.refresh_from_db()
    payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert (payment.provider_payment_id, payment.method_brand) == (
        "pay_Reconciled0001",
        "Net banking",
    )


def _paid_by_link(client, invoice, pay_id="pay_ToRefund00001"):
    payment = _link_payment(invoice, "plink_ToRefund0001")
    post_event(client, link_paid(payment, pay_id=pay_id), event_id="Ev_paid_for_refund")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    return payment


def test_staff_refund_from_admin_goes_to_razorpay_and_its_webhook_confirms(
    client, staff, invoice, http
):
    payment = _paid_by_link(client, invoice)
    total_minor = to_minor_units(payment.amount)
    http.get(
        f"{API}/payments/pay_ToRefund00001/refunds",
        json={"entity": "collection", "count": 0, "items": []},
    )

    def refund(request):
        sent = json.loads(request.body)
        answer = refund_entity(
            payment,
            refund_id="rfnd_FP8QHiV938haTz",
            pay_id="pay_ToRefund00001",
            amount_minor=sent["amount"],
            receipt=sent["receipt"],
            status="pending",
        )
        return 200, {}, json.dumps(answer)

    http.add_callback(responses.POST, f"{API}/payments/pay_ToRefund00001/refund", callback=refund)
    client.force_login(staff)
    client.post(
        "/admin/payments/payment/", {"action": "refund_full", "_selected_action": [payment.pk]}
    )
    sent = json.loads(http.calls[1].request.body)
    (ours,) = payment.refunds.all()
    assert sent["amount"] == total_minor
    assert sent["receipt"] == ours.idempotency_key
    assert sent["notes"]["payment_id"] == str(payment.pk)
    assert (ours.provider_refund_id, ours.status) == ("rfnd_FP8QHiV938haTz", RefundStatus.PENDING)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID

    processed = event(
        "refund.processed",
        refund=refund_entity(
            payment,
            refund_id="rfnd_FP8QHiV938haTz",
            pay_id="pay_ToRefund00001",
            amount_minor=total_minor,
            receipt=ours.idempotency_key,
        ),
        payment=payment_entity(
            payment, pay_id="pay_ToRefund00001", status="refunded", amount_refunded=total_minor
        ),
    )
    post_event(client, processed, event_id="Ev_refund_ok")
    post_event(client, processed, event_id="Ev_refund_ok")
    ours.refresh_from_db()
    invoice.refresh_from_db()
    assert ours.status == RefundStatus.SUCCEEDED
    assert invoice.status == InvoiceStatus.REFUND
    assert invoice.amount_refunded == payment.amount


def test_a_refund_retried_after_a_lost_answer_is_not_sent_twice(client, invoice, http):
    payment = _paid_by_link(client, invoice, pay_id="pay_RetryRefund01")
    refunds_url = f"{API}/payments/pay_RetryRefund01/refunds"
    http.get(refunds_url, json={"entity": "collection", "count": 0, "items": []})
    http.post(
        f"{API}/payments/pay_RetryRefund01/refund", body=requests.ReadTimeout("read timed out")
    )
    with pytest.raises(ProviderUnavailable):
        payments.payment_refund(payment_id=payment.pk, amount=Decimal("100.00"), actor="t")
    (ours,) = payment.refunds.all()
    assert (ours.status, ours.provider_refund_id) == (RefundStatus.PENDING, None)

    # Razorpay did make it: the retry finds it by its receipt and sends nothing new.
    made = refund_entity(
        payment,
        refund_id="rfnd_MadeOnce00001",
        pay_id="pay_RetryRefund01",
        amount_minor=100_00,
        receipt=ours.idempotency_key,
    )
    http.get(refunds_url, json={"entity": "collection", "count": 1, "items": [made]})
    again = payments.payment_refund(payment_id=payment.pk, amount=Decimal("100.00"), actor="t")
    assert again.pk == ours.pk
    assert again.provider_refund_id == "rfnd_MadeOnce00001"
    posts = [c for c in http.calls if c.request.method == "POST"]
    assert len(posts) == 1
    assert payment.refunds.count() == 1


# --- The rule: which provider serves an invoice ---------------------------------------


def test_rupee_invoices_go_to_razorpay_once_it_is_configured(settings):
    settings.PAYMENT_PROVIDER = "stripe"
    assert provider_for_currency("INR") == "razorpay"
    assert provider_for_currency("inr") == "razorpay"
    assert provider_for_currency("EUR") == "stripe"
    assert provider_for_currency("USD") == "stripe"
    settings.RAZORPAY_KEY_ID = ""
    assert provider_for_currency("INR") == "stripe"
    settings.PAYMENT_PROVIDER = "sandbox"
    assert provider_for_currency("INR") == "sandbox"


def test_the_admin_shows_which_provider_serves_each_invoice(client, staff, customer, invoice):
    euro = make_invoice(customer=customer)
    client.force_login(staff)
    listing = client.get("/admin/invoices/invoice/").content.decode()
    assert "Pay online via" in listing
    assert provider_for_invoice(invoice) == "razorpay"
    assert provider_for_invoice(euro) == "sandbox"
    assert listing.count(">razorpay<") == 1 and listing.count(">sandbox<") == 1
    detail = client.get(f"/admin/invoices/invoice/{invoice.pk}/change/").content.decode()
    assert "Pay online via" in detail and "razorpay" in detail


def test_euro_invoices_keep_the_default_provider(client, owner, customer):
    euro = make_invoice(customer=customer)
    client.force_login(owner)
    response = client.post(f"/invoices/{euro.number}/pay/")
    assert response.status_code == 303
    assert "/sandbox/checkout/" in response["Location"]
    assert euro.payments.get().provider == "sandbox"


def test_deploy_check_wants_both_razorpay_secrets_with_its_key(settings):
    from core.checks import portal_deploy_checks

    def e004():
        return [p.id for p in portal_deploy_checks(None) if p.id == "portal.E004"]

    assert e004() == []
    settings.RAZORPAY_WEBHOOK_SECRET = ""
    assert e004() == ["portal.E004"]
    settings.RAZORPAY_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.RAZORPAY_KEY_SECRET = ""
    assert e004() == ["portal.E004"]
    settings.RAZORPAY_KEY_ID = ""
    assert e004() == []
