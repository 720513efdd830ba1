"""Re-read unfinished payments (and saved cards) from Stripe and apply what webhooks missed."""

from django.conf import settings
from django.core.management.base import BaseCommand

from billing.payments import services as payments
from billing.payments.providers import PaymentError


class Command(BaseCommand):
    help = "Apply payment outcomes the webhooks missed (safe to run any time)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-minutes",
            type=int,
            default=5,
            help="Leave payments younger than this to their webhooks.",
        )
        parser.add_argument(
            "--methods", action="store_true", help="Also re-read every customer's saved cards."
        )

    def handle(self, *args, **options):
        if settings.PAYMENT_PROVIDER != "stripe":
            self.stdout.write("PAYMENT_PROVIDER is not stripe: nothing to sync.")
            return
        changed = payments.payments_reconcile(
            actor="sync_stripe", older_than_minutes=options["older_than_minutes"]
        )
        self.stdout.write(f"{changed} payment(s) updated from Stripe.")
        if options["methods"]:
            try:
                count = payments.payment_methods_sync_all(actor="sync_stripe")
            except PaymentError as exc:
                self.stderr.write(exc.message)
                return
            self.stdout.write(f"{count} customer(s) had their saved cards re-read.")
