"""Row locks take only the rows they name, and a database error stops one contract only."""

import threading

import psycopg
import pytest
from django.db import connection, connections, transaction

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


def test_a_database_error_on_one_contract_does_not_lose_the_others_in_its_chunk(customer):
    """A real constraint error: a live invoice already holds one contract's period (staff,
    or a restore, left next_billing_date behind). The chunk's insert fails and rolls the
    whole chunk back; billed again one by one, the others are issued and the bad one is
    reported, its next billing date left for the next run."""
    import datetime

    from billing.invoices.models import Invoice

    day = datetime.date(2026, 1, 1)
    first = make_contract(customer, started_on=day)
    bad = make_contract(customer, started_on=day)
    last = make_contract(customer, started_on=day)
    Invoice.objects.create(
        customer=customer, contract=bad, currency="EUR", period_start=day, period_end=day
    )
    result = services.billing_run(today=day)
    assert "inv_one_per_contract_period" in result.errors[bad.pk]
    assert first.invoices.count() == 1 and last.invoices.count() == 1
    assert bad.invoices.count() == 1, "only the invoice that was there"
    assert sorted(result.invoice_ids) == sorted([first.invoices.get().pk, last.invoices.get().pk])
    numbers = sorted(Invoice.objects.exclude(number=None).values_list("number", flat=True))
    assert numbers == ["INV-2026-000001", "INV-2026-000002"], "the rolled-back chunk left no gap"
    bad.refresh_from_db()
    assert bad.next_billing_date == day
