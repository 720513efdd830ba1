from django.core.management.base import BaseCommand

from billing.invoices.rollup import rollup_differences, rollup_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the invoice list's rollup (counts and sums per customer, currency, status "
        "and month) from the invoices and report differences; --fix replaces the rollup."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="Replace wrong rollup rows.")
        parser.add_argument("--customer", type=int, help="Only this customer (id).")

    def handle(self, *args, fix: bool = False, customer: int | None = None, **options):
        differences = rollup_rebuild(customer) if fix else rollup_differences(customer)
        for d in differences:
            customer_id, currency, status, issue_month, due_month = d.key
            self.stdout.write(
                f"customer {customer_id} {currency} {status} issued {issue_month:%Y-%m} "
                f"due {due_month:%Y-%m}: rollup (count, total, paid, owed) {_fmt(d.stored)}, "
                f"invoices {_fmt(d.expected)}"
            )
        if not differences:
            self.stdout.write(self.style.SUCCESS("The invoice rollup matches the invoices."))
        elif fix:
            self.stdout.write(self.style.WARNING(f"Fixed {len(differences)} rollup row(s)."))
        else:
            self.stdout.write(
                self.style.ERROR(f"{len(differences)} rollup row(s) differ; run with --fix.")
            )
            raise SystemExit(1)


def _fmt(sums) -> str:
    return "(" + ", ".join(str(v) for v in sums) + ")"
