"""Two staff groups: "Billing staff" act on billing records, "Support (read-only)" only look.

Billing staff: view everything of core, contracts, invoices and payments; change the
billing models (invoices, payments and their records; lease contracts, which the billing
run acts on; customers, whose billing details and VAT check are billing's); refund
payments; cancel contracts; lift log-in and API lockouts. Never add or delete: money
records are written by the services. Support: view only. Admin actions ask these
permissions (docs/security.md, "Admin").
"""

from django.db import migrations

BILLING_STAFF = "Billing staff"
SUPPORT = "Support (read-only)"
VIEW_APPS = ("core", "contracts", "invoices", "payments")
CHANGE_APPS = ("invoices", "payments")
EXTRA = {
    BILLING_STAFF: (
        ("contracts", "change_leasecontract"),
        ("contracts", "change_customer"),
        ("contracts", "cancel_contract"),
        ("contracts", "change_lockout"),
        ("payments", "refund_payment"),
    ),
}


def _ensure_permissions(apps) -> None:
    """Permissions are created after all migrations; a fresh database needs them now."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def create_groups(apps, schema_editor):
    _ensure_permissions(apps)
    add_groups(apps)


def add_groups(apps) -> None:
    """The two groups with their permissions; running it again changes nothing."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(
        content_type__app_label__in=VIEW_APPS, codename__startswith="view_"
    )
    change = Permission.objects.filter(
        content_type__app_label__in=CHANGE_APPS, codename__startswith="change_"
    )
    support, _ = Group.objects.get_or_create(name=SUPPORT)
    support.permissions.add(*view)
    billing, _ = Group.objects.get_or_create(name=BILLING_STAFF)
    billing.permissions.add(*view, *change)
    for app_label, codename in EXTRA[BILLING_STAFF]:
        billing.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[BILLING_STAFF, SUPPORT]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("core", "0001_initial"),
        ("contracts", "0005_lockouts"),
        ("invoices", "0002_tax_rates"),
        ("payments", "0002_refund_payment_permission"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
