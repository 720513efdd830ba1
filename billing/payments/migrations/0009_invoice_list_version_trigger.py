from django.db import migrations

from billing.invoices import triggers as t

# The invoice list's cache version changes with these rows too (billing.invoices.triggers).


def forward(apps, schema_editor) -> None:
    t.run(schema_editor, t.pg_install(t.PAYMENTS), t.sqlite_install(t.PAYMENTS))


def backward(apps, schema_editor) -> None:
    t.run(schema_editor, t.pg_uninstall(t.PAYMENTS), t.sqlite_uninstall(t.PAYMENTS))


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0008_webhook_event_unique_per_provider"),
        ("invoices", "0007_invoice_list_version"),
    ]

    operations = [migrations.RunPython(forward, backward)]
