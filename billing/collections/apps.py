from django.apps import AppConfig


class CollectionsConfig(AppConfig):
    name = "billing.collections"
    label = "collections"
    verbose_name = "Collections (reminders, retries, grace)"

    def ready(self) -> None:
        # Connects the signal receivers (charges, e-mails).
        from . import activity, receivers  # noqa: F401
