from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "billing.api"
    label = "api"
    verbose_name = "API"

    def ready(self) -> None:
        # How the activity page tells token entries (core.activity).
        from django.db.models.signals import post_save

        from billing.invoices.signals import invoices_issued
        from core.models import AuditEntry

        from . import activity  # noqa: F401
        from .webhooks import on_audit_entry_saved, on_invoices_issued

        # Outgoing webhooks are fed by the audit entries of the facts they report
        # (billing.api.webhooks), so the lower apps name no webhook.
        post_save.connect(on_audit_entry_saved, sender=AuditEntry, dispatch_uid="api.webhooks")
        # The billing run's entries are written in bulk, without post_save.
        invoices_issued.connect(on_invoices_issued, dispatch_uid="api.webhooks.invoices_issued")
