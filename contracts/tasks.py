"""Contracts' background work: each task takes ids, calls one service, is safe twice."""

from celery import shared_task

from core.tasks import PortalTask

from .selectors import customers_due_for_vies
from .services import customer_vies_check

VIES = "vies check"


@shared_task(base=PortalTask, name="contracts.vies_check")
def vies_check(customer_id: int) -> None:
    customer_vies_check(customer_id=customer_id, actor=VIES)


@shared_task(base=PortalTask, name="contracts.vies_recheck")
def vies_recheck() -> int:
    """Daily: ids never answered (a lost message, an outage) and answers grown old."""
    ids = list(customers_due_for_vies())
    for customer_id in ids:
        customer_vies_check(customer_id=customer_id, actor=VIES)
    return len(ids)
