"""Reports join the staff groups (billing/payments/migrations/0003_staff_groups.py):
Billing staff view and decide them (change), Support views them."""

from django.db import migrations

GRANTS = {
    "Billing staff": ("view_invoicereport", "change_invoicereport"),
    "Support (read-only)": ("view_invoicereport",),
}


def add_permissions(apps) -> None:
    """Running it again changes nothing."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label="collections", codename__in=codenames
            )
        )


def forwards(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    config = apps.get_app_config("collections")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    add_permissions(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("collections", "0001_invoice_reports"),
        ("payments", "0003_staff_groups"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
