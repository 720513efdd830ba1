"""Row locks take only the rows they name, and a database error stops one contract only."""

import threading

import psycopg
import pytest
from django.db import OperationalError, connection, connections, transaction

from billing.invoices import services
from tests.factories import make_contract, make_invoice

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_locking_an_invoice_leaves_its_customer_and_contract_free(customer):
    invoice = make_invoice(customer=customer)
    locked, release, result = threading.Event(), threading.Event(), {}

    def hold_invoice_lock():
        try:
            with transaction.atomic():
                services.lock_invoice(invoice.pk)
                locked.set()
                assert release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_invoice_lock)
    holder.start()
    try:
        assert locked.wait(10)
        db = connection.settings_dict
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
        ) as other:
            for table, pk in (
                ("contracts_customer", customer.pk),
                ("contracts_leasecontract", invoice.contract_id),
            ):
                other.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [pk])
                result[table] = "free"
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(
                    "SELECT 1 FROM invoices_invoice WHERE id = %s FOR UPDATE NOWAIT", [invoice.pk]
                )
    finally:
        release.set()
        holder.join(10)
    assert not holder.is_alive()
    assert result == {"contracts_customer": "free", "contracts_leasecontract": "free"}


def test_a_database_error_on_one_contract_does_not_stop_the_billing_run(customer, monkeypatch):
    import datetime

    bad = make_contract(customer, started_on=datetime.date(2026, 1, 1))
    good = make_contract(customer, started_on=datetime.date(2026, 1, 1))
    real = services.contract_bill_due_periods

    def deadlock_on_bad(*, contract_id, **kw):
        if contract_id == bad.pk:
            raise OperationalError("deadlock detected")
        return real(contract_id=contract_id, **kw)

    monkeypatch.setattr(services, "contract_bill_due_periods", deadlock_on_bad)
    result = services.billing_run(today=datetime.date(2026, 1, 1))
    assert "deadlock detected" in result.errors[bad.pk]
    assert good.invoices.count() == 1 and not bad.invoices.exists()
