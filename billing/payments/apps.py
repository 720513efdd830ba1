from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "billing.payments"
    label = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        # Connects the automatic refund of excess money and the invoice receivers.
        from . import activity, receivers, services  # noqa: F401
