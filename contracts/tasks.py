"""Contract standing tasks of the billing calendar; thin and safe to run twice."""

from celery import shared_task

from . import grace


@shared_task(name="contracts.enforce_grace_period")
def enforce_grace_period() -> int:
    return len(grace.grace_enforce().cancelled)


@shared_task(name="contracts.mark_past_due")
def mark_past_due() -> int:
    return grace.contracts_mark_past_due()


@shared_task(name="contracts.send_cancellation_notice")
def send_cancellation_notice(contract_id: int) -> bool:
    from billing.notifications import notify_contract_cancelled

    return notify_contract_cancelled(contract_id=contract_id)
