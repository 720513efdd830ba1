import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.invoices.services import billing_run


class Command(BaseCommand):
    help = "Issue the invoices of every contract whose next period has started (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--date", help="Bill as of this day (YYYY-MM-DD); default today.")

    def handle(self, *args, date: str | None = None, **options):
        try:
            today = datetime.date.fromisoformat(date) if date else timezone.localdate()
        except ValueError:
            raise CommandError("Write the date as YYYY-MM-DD.") from None
        result = billing_run(today=today)
        for contract_id, error in result.errors.items():
            self.stderr.write(f"Contract {contract_id}: {error}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Billing run {today:%Y-%m-%d}: {len(result.invoice_ids)} invoice(s) issued, "
                f"{len(result.errors)} contract(s) with errors."
            )
        )
