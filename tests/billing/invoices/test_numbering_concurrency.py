"""Two finalisations racing on PostgreSQL get consecutive numbers, no gap, no duplicate."""

import pytest
from django.db import connection

from billing.invoices import services
from billing.invoices.models import Invoice
from tests.factories import make_invoice
from tests.threads import run_together

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_concurrent_finalisations_get_gapless_numbers(customer):
    drafts = [make_invoice(customer=customer, finalize=False) for _ in range(6)]
    _, errors = run_together(
        *[lambda pk=d.pk: services.invoice_finalize(invoice_id=pk, actor="t") for d in drafts]
    )
    assert errors == []
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    year = numbers[0].split("-")[1]
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 7)]
