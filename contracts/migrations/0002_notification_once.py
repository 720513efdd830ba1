"""Each customer e-mail is logged as an audit entry "notification.<kind>" on its object.

This partial unique index makes the log the guard that sends each notification exactly
once: a second worker's insert fails (after waiting for the first to commit) and it
sends nothing.
"""

from django.db import migrations

INDEX = "audit_notification_once"


class Migration(migrations.Migration):
    dependencies = [("contracts", "0001_initial")]

    operations = [
        migrations.RunSQL(
            sql=(
                f"CREATE UNIQUE INDEX {INDEX} ON contracts_auditentry "
                "(content_type_id, object_id, action) WHERE action LIKE 'notification.%'"
            ),
            reverse_sql=f"DROP INDEX {INDEX}",
        )
    ]
