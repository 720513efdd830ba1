"""Reads of billing.api for the pages: the customer's webhook endpoints and deliveries."""

from django.db.models import QuerySet

from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

RECENT_DELIVERIES = 25


def webhook_endpoints(customer_id: int) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(customer_id=customer_id).order_by("-created_at", "-id")


def webhook_endpoint(customer_id: int, endpoint_id: int) -> WebhookEndpoint:
    """The customer's endpoint; another customer's raises DoesNotExist (a 404)."""
    return WebhookEndpoint.objects.get(pk=endpoint_id, customer_id=customer_id)


def recent_deliveries(endpoint: WebhookEndpoint) -> list[WebhookDelivery]:
    """The newest deliveries with their attempts (two queries, whatever the count)."""
    from django.db.models import Prefetch

    return list(
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .defer("payload")
        .prefetch_related(Prefetch("log", queryset=WebhookAttempt.objects.order_by("-at", "-id")))
        .order_by("-created_at", "-id")[:RECENT_DELIVERIES]
    )
