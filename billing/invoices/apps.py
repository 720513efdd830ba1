from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "billing.invoices"
    label = "invoices"
    verbose_name = "Invoices"

    def ready(self) -> None:
        # Connects the signal receivers (PDF rendering).
        from . import activity, receivers  # noqa: F401
