"""Payment tasks: reconciliation with the provider, releasing abandoned 3-D Secure
attempts and closing Pay online sessions."""

from celery import shared_task

from . import services
from .providers.base import ProviderUnavailable

CALENDAR = "billing calendar"


@shared_task(name="payments.reconcile_payments")
def reconcile_payments() -> int:
    return services.payments_reconcile(actor=CALENDAR)


@shared_task(name="payments.release_stale_payment_actions")
def release_stale_payment_actions() -> int:
    """Cancel charges left waiting for 3-D Secure, so the next automatic charge can run."""
    return services.payments_release_stale_actions(actor=CALENDAR)


@shared_task(
    name="payments.expire_checkout_sessions",
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=60,
    max_retries=5,
)
def expire_checkout_sessions(invoice_id: int) -> int:
    return services.checkout_expire_for_invoice(invoice_id=invoice_id, actor=CALENDAR)


@shared_task(
    name="payments.refund_credit_note",
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=60,
    max_retries=5,
)
def refund_credit_note(credit_note_id: int) -> int:
    return len(services.credit_note_refund(credit_note_id=credit_note_id, actor=CALENDAR))
