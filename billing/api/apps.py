from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "billing.api"
    label = "api"
    verbose_name = "API"

    def ready(self) -> None:
        # How the activity page tells token entries (core.activity).
        from . import activity  # noqa: F401
