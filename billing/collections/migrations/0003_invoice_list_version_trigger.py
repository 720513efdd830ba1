from django.db import migrations

from billing.invoices import triggers as t

# The invoice list's cache version changes with these rows too (billing.invoices.triggers).


def forward(apps, schema_editor) -> None:
    t.run(schema_editor, t.pg_install(t.REPORTS), t.sqlite_install(t.REPORTS))


def backward(apps, schema_editor) -> None:
    t.run(schema_editor, t.pg_uninstall(t.REPORTS), t.sqlite_uninstall(t.REPORTS))


class Migration(migrations.Migration):
    dependencies = [
        ("collections", "0002_staff_group_permissions"),
        ("invoices", "0007_invoice_list_version"),
    ]

    operations = [migrations.RunPython(forward, backward)]
