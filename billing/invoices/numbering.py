"""Gapless document numbers per series and year: invoices INV-2026-000123, credit notes
CN-2026-000001 (a series of their own, so neither leaves a gap in the other).

The counter row is locked with SELECT ... FOR UPDATE inside the caller's
transaction: concurrent finalisations queue on it, and a rollback returns the
number, so no number is skipped or used twice.
"""

from django.db import connection

from billing.invoices.models import InvoiceNumberCounter


def format_number(series: str, year: int, sequence: int) -> str:
    return f"{series}-{year}-{sequence:06d}"


def allocate_invoice_number(*, series: str, year: int) -> str:
    assert connection.in_atomic_block, "allocate inside the issuing transaction"
    # ignore_conflicts: two first finalisations of a year may race to create the row.
    InvoiceNumberCounter.objects.bulk_create(
        [InvoiceNumberCounter(series=series, year=year)], ignore_conflicts=True
    )
    counter = InvoiceNumberCounter.objects.select_for_update().get(series=series, year=year)
    counter.last_number += 1
    counter.save(update_fields=["last_number"])
    return format_number(series, year, counter.last_number)
