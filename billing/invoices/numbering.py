"""Gapless document numbers per series and year: invoices INV-2026-000123, credit notes
CN-2026-000001 (a series of their own, so neither leaves a gap in the other).

The counter row is created or advanced by one `INSERT ... ON CONFLICT DO UPDATE ...
RETURNING` inside the caller's transaction, which takes the row's lock until that
transaction ends: concurrent finalisations queue on it, and a rollback returns the
numbers, so no number is skipped or used twice. Callers take it as late as they can (the
billing run as the last step of a chunk) because every other issuer waits for their commit.
"""

from django.db import connection

from billing.invoices.models import InvoiceNumberCounter


def format_number(series: str, year: int, sequence: int) -> str:
    return f"{series}-{year}-{sequence:06d}"


# format_number in SQL, for a statement that numbers rows as it writes them (the billing
# run's chunks): %(prefix)s is format_number(series, year, 0)[:-6], {sequence} an integer
# expression; zero-padded to six digits, longer numbers in full, as {:06d} does.
NUMBER_SQL = "%(prefix)s || lpad(({sequence})::text, greatest(6, length(({sequence})::text)), '0')"


def allocate_invoice_numbers(*, series: str, year: int, count: int) -> list[str]:
    """`count` consecutive numbers of the series and year, in one statement (one round trip)."""
    assert connection.in_atomic_block, "allocate inside the issuing transaction"
    assert count > 0
    assert InvoiceNumberCounter._meta.db_table == "invoices_invoicenumbercounter"
    with connection.cursor() as cursor:
        # Both PostgreSQL and SQLite (3.35+) take this form; the existing row is named by
        # its table in the DO UPDATE clause, the proposed one by EXCLUDED.
        cursor.execute(
            "INSERT INTO invoices_invoicenumbercounter (series, year, last_number) "
            "VALUES (%s, %s, %s) ON CONFLICT (series, year) DO UPDATE "
            "SET last_number = invoices_invoicenumbercounter.last_number + EXCLUDED.last_number "
            "RETURNING last_number",
            [series, year, count],
        )
        (last,) = cursor.fetchone()
    return [format_number(series, year, n) for n in range(last - count + 1, last + 1)]


def allocate_invoice_number(*, series: str, year: int) -> str:
    (number,) = allocate_invoice_numbers(series=series, year=year, count=1)
    return number
