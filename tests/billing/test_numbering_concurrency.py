"""Two finalisations racing on PostgreSQL get consecutive numbers, no gap, no duplicate."""

import threading

import pytest
from django.db import connection, connections

from billing import services
from billing.models import Invoice
from tests.factories import make_invoice

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_concurrent_finalisations_get_gapless_numbers(customer):
    drafts = [make_invoice(customer=customer, finalize=False) for _ in range(6)]
    barrier = threading.Barrier(len(drafts))
    errors = []

    def finalize(invoice_id):
        try:
            barrier.wait()
            services.invoice_finalize(invoice_id=invoice_id, actor="t")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finalize, args=(d.pk,)) for d in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    year = numbers[0].split("-")[1]
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 7)]
