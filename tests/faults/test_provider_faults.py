"""Fault injection: a payment provider that is slow or never answers.

Pay online must answer the "try again" page within its budget, with no row lock held while
it waits (webhooks, charges and grace enforcement on the same invoice go on), and two
clicks still make one session. The provider is a server this test starts on 127.0.0.1.
"""

import threading
import time

import pytest
import stripe
from django.conf import settings as django_settings
from django.db import DatabaseError, connection, transaction
from django.test import Client

from billing.invoices.models import Invoice
from billing.payments import services as payments
from billing.payments.models import Payment, PaymentStatus
from billing.payments.providers.stripe_provider import request_budget
from core.tasks import task_context
from tests.factories import make_invoice
from tests.faults.servers import FakeStripe, SilentServer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL"),
]

TIMEOUT = 0.5


@pytest.fixture
def stripe_at(settings):
    def point(url: str, *, retries: int = 1) -> None:
        settings.PAYMENT_PROVIDER = "stripe"
        settings.STRIPE_SECRET_KEY = "sk_test_" + "a" * 24
        settings.STRIPE_API_BASE = url
        settings.STRIPE_CONNECT_TIMEOUT_SECONDS = TIMEOUT
        settings.STRIPE_TIMEOUT_SECONDS = TIMEOUT
        settings.STRIPE_MAX_NETWORK_RETRIES = retries

    return point


@pytest.fixture
def invoice(customer):
    invoice = make_invoice(customer=customer)
    customer.stripe_customer_id = "cus_known"
    customer.save(update_fields=["stripe_customer_id"])
    return invoice


def _invoice_row_is_free(invoice: Invoice) -> bool:
    """Can another connection lock the invoice row right now, without waiting?"""
    try:
        with transaction.atomic():
            Invoice.objects.select_for_update(nowait=True).get(pk=invoice.pk)
    except DatabaseError:
        return False
    return True


def _click(owner, invoice: Invoice, results: list) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    started = time.perf_counter()
    response = client.post(f"/invoices/{invoice.number}/pay/")
    results.append((response, time.perf_counter() - started))


def _run(target, *args) -> threading.Thread:
    def run() -> None:
        try:
            target(*args)
        finally:
            from django.db import connections

            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_provider_that_never_answers_gets_the_503_page_in_bounded_time(stripe_at, owner, invoice):
    with SilentServer() as provider:
        stripe_at(f"http://127.0.0.1:{provider.port}", retries=1)
        results: list = []
        clicking = _run(_click, owner, invoice, results)
        assert provider.got_data.wait(5), "the click never reached the provider"
        # The click waits on the provider: the invoice row is not locked meanwhile.
        assert _invoice_row_is_free(invoice)
        clicking.join(15)
        assert not clicking.is_alive()
    ((response, took),) = results
    assert response.status_code == 503
    assert b"not reachable right now" in response.content
    # Two tries of at most connect + read each, and stripe-python's 0.5-1 s back-off.
    assert took < 2 * (2 * TIMEOUT) + 1 + 1.5, f"took {took:.2f} s"
    assert len(provider.connections) == 2, "one try and one retry"
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_code == "provider_unavailable"


def test_two_clicks_during_a_slow_provider_make_one_session(stripe_at, owner, invoice, monkeypatch):
    waiting = threading.Event()
    real_wait = payments._checkout_wait_for

    def wait_for(payment_id):
        waiting.set()
        return real_wait(payment_id)

    monkeypatch.setattr(payments, "_checkout_wait_for", wait_for)
    with FakeStripe(hold=True) as provider:
        stripe_at(provider.url, retries=0)
        django_settings.STRIPE_TIMEOUT_SECONDS = 10  # slow, not dead
        first: list = []
        second: list = []
        first_click = _run(_click, owner, invoice, first)
        assert provider.request_arrived.wait(5)
        assert _invoice_row_is_free(invoice), "the row is locked across the provider call"
        second_click = _run(_click, owner, invoice, second)
        assert waiting.wait(5), "the second click did not wait for the first one's session"
        assert _invoice_row_is_free(invoice)
        provider.release()
        first_click.join(15)
        second_click.join(15)
    (a, _), (b, _) = first[0], second[0]
    assert a.status_code == b.status_code == 303
    assert a["Location"] == b["Location"]
    assert len(provider.posts("/v1/checkout/sessions")) == 1
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.PENDING and payment.checkout_url == a["Location"]


def test_a_second_click_that_waited_too_long_is_asked_to_try_again(
    stripe_at, owner, invoice, settings
):
    settings.CHECKOUT_WAIT_SECONDS = 0.3
    with FakeStripe(hold=True) as provider:
        stripe_at(provider.url, retries=0)
        settings.STRIPE_TIMEOUT_SECONDS = 10
        first: list = []
        first_click = _run(_click, owner, invoice, first)
        assert provider.request_arrived.wait(5)
        second: list = []
        _click(owner, invoice, second)
        ((response, took),) = second
        assert response.status_code == 503
        assert b"still being prepared" in response.content
        assert took < 2
        provider.release()
        first_click.join(15)
    assert first[0][0].status_code == 303
    # The next click reuses the session the first one made.
    again: list = []
    _click(owner, invoice, again)
    assert again[0][0]["Location"] == first[0][0]["Location"]
    assert len(provider.posts("/v1/checkout/sessions")) == 1


def test_the_web_budget_stays_under_the_worker_timeout_and_tasks_get_a_longer_one():
    """Worst case of a Pay online click: two calls (the customer, then the session), each
    tried 1 + retries times for connect + read, with stripe-python's back-off between."""
    import runpy
    from pathlib import Path

    gunicorn = runpy.run_path(str(Path(django_settings.BASE_DIR) / "config" / "gunicorn.conf.py"))
    (connect, read), retries = request_budget()
    backoff = sum(
        min(stripe.RequestsClient.INITIAL_DELAY * 2 ** (n - 1), stripe.RequestsClient.MAX_DELAY)
        for n in range(1, retries + 1)
    )
    per_call = (retries + 1) * (connect + read) + backoff
    assert 2 * per_call < gunicorn["timeout"], (2 * per_call, gunicorn["timeout"])
    assert gunicorn["worker_class"] == "gthread"
    with task_context():
        (task_connect, task_read), task_retries = request_budget()
    assert task_read > read and task_retries >= retries
    task_per_call = (task_retries + 1) * (task_connect + task_read) + 5 * task_retries
    assert task_per_call < django_settings.CELERY_TASK_SOFT_TIME_LIMIT


def test_a_pay_online_attempt_whose_request_died_is_given_up(owner, invoice, settings):
    """A worker killed between recording the attempt and storing its session leaves it
    pending without a session; once it is older than a request can live, a click makes a
    new one instead of waiting for it."""
    import datetime

    import time_machine

    settings.PAYMENT_PROVIDER = "sandbox"
    stale = payments.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind="checkout", actor="t"
    )
    Payment.objects.filter(pk=stale.pk).update(
        checkout_success_url=f"http://testserver/invoices/{invoice.number}/pay/done/",
        checkout_cancel_url=f"http://testserver/invoices/{invoice.number}/pay/cancelled/",
    )
    later = datetime.datetime.now(tz=datetime.UTC) + payments.CHECKOUT_IN_FLIGHT
    with time_machine.travel(later + datetime.timedelta(seconds=1)):
        results: list = []
        _click(owner, invoice, results)
    assert results[0][0].status_code == 303
    stale.refresh_from_db()
    assert stale.status == PaymentStatus.CANCELLED
    fresh = invoice.payments.exclude(pk=stale.pk).get()
    assert fresh.status == PaymentStatus.PENDING and fresh.checkout_url


def test_a_session_made_while_the_invoice_was_voided_is_expired_again(
    owner, invoice, settings, monkeypatch
):
    """No lock is held while the provider works, so staff may void the invoice meanwhile:
    the session it made is recorded, expired at the provider and cancelled."""
    from billing.invoices.services import invoice_void
    from billing.payments.providers import sandbox

    settings.PAYMENT_PROVIDER = "sandbox"
    real_create = sandbox.SandboxProvider.checkout_create
    expired: list[str] = []

    def create_while_staff_voids(self, **kw):
        invoice_void(invoice_id=invoice.pk, actor="staff", reason="issued in error")
        return real_create(self, **kw)

    monkeypatch.setattr(sandbox.SandboxProvider, "checkout_create", create_while_staff_voids)
    monkeypatch.setattr(
        sandbox.SandboxProvider,
        "checkout_expire",
        lambda self, *, checkout_id: expired.append(checkout_id),
    )
    results: list = []
    _click(owner, invoice, results)
    response = results[0][0]
    assert response.status_code == 409
    assert b"cannot be paid" in response.content
    payment = invoice.payments.get()
    assert payment.status == PaymentStatus.CANCELLED
    assert expired == [payment.provider_checkout_id]
