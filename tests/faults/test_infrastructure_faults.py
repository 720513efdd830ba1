"""Fault injection: Redis down while pages and the API are served, and the database
connection dropped inside a request."""

import datetime

import psycopg
import pytest
from django.db import InterfaceError, OperationalError, connection
from django.test import Client

from billing.api import views as api_views
from billing.api.models import ApiScope
from billing.invoices.models import Invoice, InvoiceStatus
from contracts.models import Role
from tests.factories import MembershipFactory, make_invoice

REDIS_DOWN = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
    }
}


@pytest.mark.django_db
def test_pages_and_the_api_keep_working_while_redis_is_down(settings, customer, owner, make_token):
    settings.CACHES = REDIS_DOWN
    invoice = make_invoice(customer=customer, started_on=datetime.date.today())
    client = Client()
    # Logging in through the form: the session is written to the database alone.
    response = client.post("/accounts/login/", {"username": owner.username, "password": "pw"})
    assert response.status_code == 302
    for _ in range(2):  # the second view has a CSRF cookie and a cached session to look up
        assert client.get("/invoices/").status_code == 200
    assert client.get(invoice.get_absolute_url()).status_code == 200
    membership = MembershipFactory(customer=customer, role=Role.BILLING)
    _, raw = make_token(membership, scopes=[ApiScope.READ_INVOICES])
    response = client.get("/api/invoices/", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200, "the per-token rate limit fails open"
    assert response.json()["data"][0]["number"] == invoice.number
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/invoices/").status_code == 302, "logged out although Redis is down"


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


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")
def test_database_dropped_inside_an_api_request_answers_json_and_recovers(
    customer, make_token, monkeypatch
):
    invoice = make_invoice(customer=customer)
    membership = MembershipFactory(customer=customer, role=Role.BILLING)
    _, raw = make_token(membership, scopes=[ApiScope.READ_INVOICES])
    headers = {"Authorization": f"Bearer {raw}"}
    real = api_views._delinquent

    def drop(token):
        _kill_my_database_connection()
        return real(token)

    monkeypatch.setattr(api_views, "_delinquent", drop)
    client = Client(raise_request_exception=False)
    response = client.get(f"/api/invoices/in_{invoice.pk}", headers=headers)
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["type"] == "api_error"

    # What request_finished does in production: a broken connection is closed and the
    # next request opens a new one.
    connection.close_if_unusable_or_obsolete()
    monkeypatch.setattr(api_views, "_delinquent", real)
    again = client.get(f"/api/invoices/in_{invoice.pk}", headers=headers)
    assert again.status_code == 200 and again.json()["number"] == invoice.number


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")
def test_database_dropped_inside_a_payment_changes_nothing(customer, owner, monkeypatch):
    """The connection dies after the invoice row was locked and changed: all of it rolls back."""
    from billing.invoices import services as invoice_services
    from billing.payments import services

    invoice = make_invoice(customer=customer)
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind="api", actor="t"
    )
    real_audit = invoice_services.audit_record
    dropped = []

    def audit_then_drop(**kw):
        entry = real_audit(**kw)
        if kw.get("action") == "invoice.paid":
            _kill_my_database_connection()
            dropped.append(True)
        return entry

    monkeypatch.setattr(invoice_services, "audit_record", audit_then_drop)
    with pytest.raises((OperationalError, InterfaceError)):
        services.payment_record_success(payment_id=payment.pk, actor="t")
    assert dropped, "the connection died after the invoice was marked paid, before commit"
    connection.close()
    monkeypatch.setattr(invoice_services, "audit_record", real_audit)
    invoice = Invoice.objects.get(pk=invoice.pk)
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid == 0
    assert invoice.payments.get().status == "pending"
    # Once the database is back, the same event is applied exactly once.
    services.payment_record_success(payment_id=payment.pk, actor="t")
    services.payment_record_success(payment_id=payment.pk, actor="t")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid == invoice.total


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")
def test_database_dropped_inside_a_page_shows_a_clear_500_page(customer, owner, monkeypatch):
    from contracts import context

    make_invoice(customer=customer)
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    real = context.active_membership

    def drop_then_look_up(request):
        _kill_my_database_connection()
        return real(request)

    monkeypatch.setattr(context, "active_membership", drop_then_look_up)
    response = client.get("/invoices/")
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong on our side" in body and "nothing was changed" in body
    assert "Traceback" not in body
    connection.close()  # what request_finished does with a broken connection
