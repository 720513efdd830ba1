"""Credit notes racing on PostgreSQL get consecutive numbers in their own series, no gap."""

from decimal import Decimal

import pytest
from django.db import connection

from billing.invoices.credit_notes import credit_note_issue
from billing.invoices.models import CreditNote, Invoice
from core.errors import DomainError
from tests.factories import make_invoice
from tests.threads import run_together

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_concurrent_credit_notes_get_gapless_numbers(customer):
    invoices = [make_invoice(customer=customer) for _ in range(3)]

    def credit(invoice: Invoice, amount: str):
        return lambda: credit_note_issue(
            invoice_id=invoice.pk, amount=Decimal(amount), reason="r", settle="credit", actor="t"
        )

    # Two per invoice (they queue on its row) and across invoices (they queue on the counter);
    # one more than its invoice holds fails and must not leave a hole.
    calls = [credit(inv, "10.00") for inv in invoices] + [credit(inv, "20.00") for inv in invoices]
    calls.append(credit(invoices[0], "119.01"))
    _, errors = run_together(*calls)
    assert len(errors) == 1 and isinstance(errors[0], DomainError)
    numbers = sorted(CreditNote.objects.values_list("number", flat=True))
    year = numbers[0].split("-")[1]
    assert numbers == [f"CN-{year}-{n:06d}" for n in range(1, 7)]
    invoice_numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert invoice_numbers == [f"INV-{year}-{n:06d}" for n in range(1, 4)]
