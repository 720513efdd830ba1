from django.core.management.base import BaseCommand, CommandError

from contracts.auth import active_lockouts, lockout_clear


class Command(BaseCommand):
    help = "List the log-in and API-token lockouts in force; lift one (--clear ID) or all."

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--clear", type=int, metavar="ID", help="Lift the lockout with this id.")
        group.add_argument("--clear-all", action="store_true", help="Lift every lockout in force.")

    def handle(self, *args, clear: int | None = None, clear_all: bool = False, **options):
        if clear is not None:
            if not lockout_clear(lockout_id=clear, actor="manage.py lockouts"):
                raise CommandError(f"No lockout {clear}.")
            self.stdout.write(self.style.SUCCESS(f"Lifted lockout {clear}."))
            return
        lockouts = list(active_lockouts().order_by("locked_until"))
        if clear_all:
            lifted = sum(
                lockout_clear(lockout_id=lockout.pk, actor="manage.py lockouts")
                for lockout in lockouts
            )
            self.stdout.write(self.style.SUCCESS(f"Lifted {lifted} lockout(s)."))
            return
        for lockout in lockouts:
            self.stdout.write(
                f"{lockout.pk}\t{lockout.kind}\t{lockout.identity}\t"
                f"until {lockout.locked_until:%Y-%m-%d %H:%M:%S %Z}\t{lockout.failures} failures"
            )
        self.stdout.write(f"{len(lockouts)} lockout(s) in force.")
