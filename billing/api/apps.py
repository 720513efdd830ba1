from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "billing.api"
    label = "api"
    verbose_name = "API"

    def ready(self) -> None:
        # How the activity page tells token entries (core.activity).
        from django.db.models.signals import post_save

        from core.models import AuditEntry

        from . import activity  # noqa: F401
        from .webhooks import on_audit_entry_saved

        # Outgoing webhooks are fed by the audit entries of the facts they report
        # (billing.api.webhooks), so the lower apps name no webhook.
        post_save.connect(on_audit_entry_saved, sender=AuditEntry, dispatch_uid="api.webhooks")
