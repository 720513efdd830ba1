"""Trigram indexes for the invoice list's search (number and line text, case-insensitive).

PostgreSQL only: Django's icontains becomes UPPER(col::text) LIKE UPPER('%..%'), which a
GIN trigram index on the same expression answers. SQLite has neither, and needs nothing.
"""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS inv_number_trgm ON billing_invoice "
    "USING gin (UPPER(number::text) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS invline_description_trgm ON billing_invoiceline "
    "USING gin (UPPER(description::text) gin_trgm_ops)",
]
BACKWARD = [
    "DROP INDEX IF EXISTS invline_description_trgm",
    "DROP INDEX IF EXISTS inv_number_trgm",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_tax_rates")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD), elidable=False)]
