"""Standard rates in force on 2026-01-01. Staff change rates in admin; a new rate is a
new row with its own valid_from, so old invoices keep the rate they were issued with."""

import datetime
from decimal import Decimal

from django.db import migrations

RATES = {
    "AT": ("VAT", "20"), "BE": ("VAT", "21"), "BG": ("VAT", "20"), "CY": ("VAT", "19"),
    "CZ": ("VAT", "21"), "DE": ("VAT", "19"), "DK": ("VAT", "25"), "EE": ("VAT", "24"),
    "ES": ("VAT", "21"), "FI": ("VAT", "25.5"), "FR": ("VAT", "20"), "GR": ("VAT", "24"),
    "HR": ("VAT", "25"), "HU": ("VAT", "27"), "IE": ("VAT", "23"), "IT": ("VAT", "22"),
    "LT": ("VAT", "21"), "LU": ("VAT", "17"), "LV": ("VAT", "21"), "MT": ("VAT", "18"),
    "NL": ("VAT", "21"), "PL": ("VAT", "23"), "PT": ("VAT", "23"), "RO": ("VAT", "21"),
    "SE": ("VAT", "25"), "SI": ("VAT", "22"), "SK": ("VAT", "23"), "IN": ("IGST", "18"),
}  # fmt: skip


def add_rates(apps, schema_editor):
    TaxRate = apps.get_model("invoices", "TaxRate")
    for country, (name, rate) in RATES.items():
        TaxRate.objects.get_or_create(
            country=country,
            valid_from=datetime.date(2000, 1, 1),
            defaults={"name": name, "rate": Decimal(rate)},
        )


class Migration(migrations.Migration):
    dependencies = [("invoices", "0001_initial")]
    operations = [migrations.RunPython(add_rates, migrations.RunPython.noop)]
