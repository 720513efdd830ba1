from django.core.management.base import BaseCommand
from django.utils import timezone

from billing.collections.services import grace_enforce


class Command(BaseCommand):
    help = "Cancel contracts whose invoice is still unpaid after the grace period."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be cancelled; change nothing."
        )

    def handle(self, *args, dry_run: bool = False, **options):
        today = timezone.localdate()
        result = grace_enforce(today=today, dry_run=dry_run)
        contracts = result.candidates if dry_run else result.cancelled
        verb = "Would cancel" if dry_run else "Cancelled"
        for contract in contracts:
            blocks = ", ".join(b.prefix for b in contract.blocks.order_by("first_address"))
            self.stdout.write(f"{verb} {contract.reference} ({contract.customer}): {blocks}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {len(contracts)} contract(s) on {today:%Y-%m-%d} "
                f"({len(result.candidates)} past the grace period)."
            )
        )
