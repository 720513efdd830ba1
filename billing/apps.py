from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Importing connects the signal receivers: the billing calendar's tasks and the
        # automatic refund of duplicate payments.
        from . import payments, receivers  # noqa: F401
