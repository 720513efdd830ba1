from django.apps import AppConfig


class ContractsConfig(AppConfig):
    name = "contracts"
    verbose_name = "Customers and contracts"

    def ready(self) -> None:
        # How the activity page tells contract entries (core.activity).
        from . import activity  # noqa: F401
