import re
from urllib.parse import urlparse

import pytest

from billing.invoices.links import pay_token
from billing.invoices.models import InvoiceStatus
from billing.invoices.services import invoice_void
from billing.payments import services as payments
from billing.payments.models import Payment, PaymentKind, PaymentMethod, PaymentStatus
from billing.payments.providers import ProviderUnavailable
from contracts.models import Role
from tests.factories import MembershipFactory, make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.SANDBOX_ALLOWED = True


@pytest.fixture
def invoice(customer):
    return make_invoice(customer=customer)


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def _start(client, invoice, **data):
    response = client.post(f"/invoices/{invoice.number}/pay/", data)
    assert response.status_code == 303, response.content
    return response["Location"]


def _pay_with(client, checkout_url, card, **extra):
    return client.post(checkout_url, {"card": card, "action": "pay", **extra})


def test_pay_online_with_4242_pays_the_invoice(logged_in, invoice):
    url = _start(logged_in, invoice)
    page = logged_in.get(url)
    assert b"TEST MODE" in page.content
    assert str(invoice.amount_remaining).encode() in page.content
    done = _pay_with(logged_in, url, "4242 4242 4242 4242")
    assert done.status_code == 303
    assert urlparse(done["Location"]).path == f"/invoices/{invoice.number}/pay/done/"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    payment = invoice.payments.get()
    assert (payment.kind, payment.status, payment.method_last4) == (
        PaymentKind.CHECKOUT,
        PaymentStatus.SUCCEEDED,
        "4242",
    )
    assert b"Paid" in logged_in.get(urlparse(done["Location"]).path).content


def test_declined_card_shows_a_message_and_the_invoice_stays_open(logged_in, invoice):
    url = _start(logged_in, invoice)
    response = _pay_with(logged_in, url, "4000000000000002")
    assert response.status_code == 402
    assert b"declined" in response.content
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.FAILED and payment.failure_code == "card_declined"
    # The same session is still open, as at Stripe: another card may succeed.
    assert _start(logged_in, invoice) == url
    assert _pay_with(logged_in, url, "4242424242424242").status_code == 303
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


@pytest.mark.parametrize(("choice", "paid"), [("approve", True), ("deny", False)])
def test_three_d_secure_card_asks_then_follows_the_choice(logged_in, invoice, choice, paid):
    url = _start(logged_in, invoice)
    challenge = _pay_with(logged_in, url, "4000 0027 6000 3184")
    assert b"3-D Secure" in challenge.content
    assert invoice.payments.get().status == PaymentStatus.REQUIRES_ACTION
    logged_in.post(url, {"action": choice})
    invoice.refresh_from_db()
    assert (invoice.status == InvoiceStatus.PAID) is paid


def test_an_open_session_is_reused_not_duplicated(logged_in, invoice):
    assert _start(logged_in, invoice) == _start(logged_in, invoice)
    assert invoice.payments.count() == 1


@pytest.mark.parametrize("state", ["paid", "void", "draft", "cancelled_contract"])
def test_pay_online_is_refused_when_not_payable(logged_in, customer, state):
    invoice = make_invoice(customer=customer, finalize=state != "draft")
    if state == "paid":
        payments.invoice_check_payable_online(invoice)
        from billing.payments.services import invoice_record_out_of_band_payment

        invoice_record_out_of_band_payment(invoice_id=invoice.pk, actor="t")
    elif state == "void":
        invoice_void(invoice_id=invoice.pk, actor="t")
    elif state == "cancelled_contract":
        type(invoice.contract).objects.filter(pk=invoice.contract_id).update(status="cancelled")
    before = Payment.objects.count()
    response = logged_in.post(f"/invoices/{invoice.ref}/pay/")
    assert response.status_code == 200
    assert b"no longer needs paying" in response.content
    assert Payment.objects.count() == before


def test_viewer_may_not_pay(client, customer, invoice):
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    assert client.post(f"/invoices/{invoice.number}/pay/").status_code == 403
    assert not invoice.payments.exists()


def test_foreign_invoice_is_404(client, other_customer, invoice):
    stranger = MembershipFactory(customer=other_customer).user
    client.force_login(stranger)
    assert client.post(f"/invoices/{invoice.number}/pay/").status_code == 404
    assert client.get(f"/invoices/{invoice.number}/pay/").status_code == 404
    assert not invoice.payments.exists()


def test_pay_link_from_the_pdf_works_without_login(client, invoice):
    token = pay_token(invoice)
    page = client.get(f"/invoices/{invoice.number}/pay/?token={token}")
    assert page.status_code == 200
    assert invoice.number.encode() in page.content
    assert str(invoice.amount_remaining).encode() in page.content
    assert b"Continue to payment" in page.content
    assert invoice.customer.name.encode() not in page.content
    url = _start(client, invoice, token=token)
    done = _pay_with(client, url, "4242424242424242")
    assert "token=" in done["Location"]
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    again = client.get(f"/invoices/{invoice.number}/pay/?token={token}")
    assert b"no longer needs paying" in again.content


def test_tampered_or_foreign_token_is_404(client, customer, other_customer):
    mine = make_invoice(customer=customer)
    theirs = make_invoice(customer=other_customer)
    token = pay_token(theirs)
    assert client.get(f"/invoices/{mine.number}/pay/?token={token}").status_code == 404
    assert client.get(f"/invoices/{mine.number}/pay/?token={token}x").status_code == 404
    assert client.post(f"/invoices/{mine.number}/pay/", {"token": "nope"}).status_code == 404
    assert not mine.payments.exists()


def test_anonymous_without_token_goes_to_login(client, invoice):
    response = client.get(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_sandbox_refuses_with_debug_off_unless_allowed(settings, logged_in, invoice):
    settings.SANDBOX_ALLOWED = False
    settings.DEBUG = False
    response = logged_in.post(f"/invoices/{invoice.number}/pay/")
    assert response.status_code == 503
    assert not invoice.payments.exists()
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = "sk_live_" + "x" * 24
    with pytest.raises(ProviderUnavailable):
        payments.checkout_start(invoice_id=invoice.pk, actor="t", success_url="s", cancel_url="c")


def test_cancel_page_returns_to_the_invoice(logged_in, invoice):
    page = logged_in.get(f"/invoices/{invoice.number}/pay/cancelled/")
    assert b"Nothing was charged" in page.content
    assert invoice.get_absolute_url().encode() in page.content


def test_success_page_shows_processing_until_confirmed(logged_in, invoice):
    _start(logged_in, invoice)
    page = logged_in.get(f"/invoices/{invoice.number}/pay/done/")
    assert b"processing" in page.content


def test_payment_methods_add_default_remove(logged_in, customer):
    response = logged_in.post("/payment-methods/", {"action": "add"})
    assert response.status_code == 303
    setup_url = response["Location"]
    assert b"TEST MODE" in logged_in.get(setup_url).content
    logged_in.post(setup_url, {"card": "4242424242424242"})
    logged_in.post(setup_url, {"card": "4000000000000002"})
    first, second = PaymentMethod.objects.filter(customer=customer).order_by("created_at")
    assert first.is_default and not second.is_default
    page = logged_in.get("/payment-methods/")
    assert re.search(rb"Visa .* 4242", page.content)
    logged_in.post("/payment-methods/", {"action": "default", "method": second.pk})
    second.refresh_from_db()
    assert second.is_default
    logged_in.post("/payment-methods/", {"action": "remove", "method": first.pk})
    assert list(PaymentMethod.objects.filter(customer=customer)) == [second]


def test_payment_methods_page_is_for_paying_members_only(client, customer):
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    assert client.get("/payment-methods/").status_code == 403


def test_checkout_expire_for_invoice_closes_open_sessions(logged_in, invoice):
    url = _start(logged_in, invoice)
    assert payments.checkout_expire_for_invoice(invoice_id=invoice.pk, actor="grace") == 1
    assert invoice.payments.get().status == PaymentStatus.CANCELLED
    assert logged_in.get(url).status_code == 410
    assert _start(logged_in, invoice) != url


def test_pay_with_saved_method_and_repeat_with_same_key(customer, invoice):
    PaymentMethod.objects.create(
        customer=customer,
        provider="sandbox",
        provider_id="pm_sandbox_4242_a",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2034,
    )
    kwargs = dict(
        invoice_id=invoice.pk,
        payment_method_id="pm_sandbox_4242_a",
        off_session=False,
        actor="api",
        idempotency_key="k1",
    )
    assert payments.invoice_pay_with_saved_method(**kwargs).status == InvoiceStatus.PAID
    assert payments.invoice_pay_with_saved_method(**kwargs).status == InvoiceStatus.PAID
    assert invoice.payments.count() == 1
