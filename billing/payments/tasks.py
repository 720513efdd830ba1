"""Payment tasks: reconciliation with the provider, releasing abandoned 3-D Secure
attempts and closing Pay online sessions."""

from celery import shared_task

from core.tasks import PortalTask

from . import services

CALENDAR = "billing calendar"


@shared_task(base=PortalTask, name="payments.reconcile_payments")
def reconcile_payments() -> int:
    return services.payments_reconcile(actor=CALENDAR)


@shared_task(base=PortalTask, name="payments.release_stale_payment_actions")
def release_stale_payment_actions() -> int:
    """Cancel charges left waiting for 3-D Secure, so the next automatic charge can run."""
    return services.payments_release_stale_actions(actor=CALENDAR)


@shared_task(base=PortalTask, name="payments.expire_checkout_sessions")
def expire_checkout_sessions(invoice_id: int) -> int:
    """Queued when an invoice is voided or its contract cancelled; a provider that cannot
    be reached is retried, and expire_stale_checkout_sessions catches what was lost."""
    return services.checkout_expire_for_invoice(invoice_id=invoice_id, actor=CALENDAR)


@shared_task(base=PortalTask, name="payments.expire_stale_checkout_sessions")
def expire_stale_checkout_sessions() -> int:
    """The periodic sweep behind expire_checkout_sessions (config.celery): Pay online
    sessions still open for invoices that can no longer be paid."""
    return services.checkout_sessions_expire_unpayable(actor=CALENDAR)


@shared_task(base=PortalTask, name="payments.sandbox_settle_debit")
def sandbox_settle_debit(payment_id: int, iban: str) -> str:
    """The sandbox bank's answer to a test-IBAN debit, queued with a countdown when it was
    submitted: applied through the same services as a Stripe event (idempotent)."""
    from .providers import sandbox

    test_iban = sandbox.iban_for(iban)
    if test_iban is None:
        return "unknown iban"
    done = [
        services.provider_event_apply(event, actor="sandbox")
        for event in sandbox.debit_outcome_events(payment_id, test_iban)
    ]
    return ", ".join(done)


@shared_task(base=PortalTask, name="payments.apply_webhook_event")
def apply_webhook_event(event_pk: int) -> str:
    """Queued by the webhook endpoint on commit; idempotent (see webhook_event_process)."""
    from .webhooks import webhook_event_process

    return webhook_event_process(event_pk=event_pk)


@shared_task(base=PortalTask, name="payments.apply_waiting_webhook_events")
def apply_waiting_webhook_events() -> int:
    """Queued by the endpoint at most once per STRIPE_WEBHOOK_APPLY_BATCH_SECONDS per web
    process: applies every stored event still waiting (see webhook_events_apply_waiting)."""
    from .webhooks import webhook_events_apply_waiting

    return webhook_events_apply_waiting()


@shared_task(base=PortalTask, name="payments.sweep_webhook_events")
def sweep_webhook_events() -> int:
    """The periodic sweep behind apply_webhook_event (config.celery): stored events never
    picked up, and failed ones, retried with a pause and a limit."""
    from .webhooks import webhook_events_sweep

    return webhook_events_sweep()


@shared_task(base=PortalTask, name="payments.refund_credit_note")
def refund_credit_note(credit_note_id: int) -> int:
    """Send a credit note's refund; a provider that cannot be reached is retried, and
    reconciliation catches what was lost."""
    return len(services.credit_note_refund(credit_note_id=credit_note_id, actor=CALENDAR))
