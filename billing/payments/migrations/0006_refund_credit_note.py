import importlib

import django.db.models.deletion
from django.db import migrations, models


def grant_credit_note_permissions(apps, schema_editor):
    """The staff groups of 0003 gain view (and, for billing staff, change) on the credit note
    and customer balance models: its add_groups is safe to run again."""
    staff_groups = importlib.import_module("billing.payments.migrations.0003_staff_groups")
    staff_groups._ensure_permissions(apps)
    staff_groups.add_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("invoices", "0005_credit_notes_and_customer_balance"),
        ("payments", "0005_amount_credited_invoice_share"),
    ]

    operations = [
        migrations.AddField(
            model_name="refund",
            name="credit_note",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refunds",
                to="invoices.creditnote",
            ),
        ),
        migrations.RunPython(grant_credit_note_permissions, migrations.RunPython.noop),
    ]
