"""PostgreSQL refuses two live blocks that share an address, whatever races past the
service's check (two staff members adding overlapping prefixes at the same moment).
SQLite (the demo) relies on the service's check alone."""

from django.db import migrations

CONSTRAINT = "ipblock_live_ranges_do_not_overlap"


def add(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE contracts_ipblock ADD CONSTRAINT {CONSTRAINT} EXCLUDE USING gist "
            "(int8range(first_address, last_address, '[]') WITH &&) "
            "WHERE (status <> 'deactivated')"
        )


def remove(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE contracts_ipblock DROP CONSTRAINT {CONSTRAINT}")


class Migration(migrations.Migration):
    dependencies = [("contracts", "0002_notification_once")]
    operations = [migrations.RunPython(add, remove)]
