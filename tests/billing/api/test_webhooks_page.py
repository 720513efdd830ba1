"""/settings/webhooks/: owners and billing members add, inspect, switch and delete endpoints."""

import pytest
from django.utils import timezone

from billing.api.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from contracts.models import Role
from core.models import AuditEntry
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def billing_member(customer):
    return MembershipFactory(customer=customer, role=Role.BILLING)


@pytest.fixture
def logged_in(client, billing_member):
    client.force_login(billing_member.user)
    return client


def _add(client, **data):
    body = {
        "url": "https://erp.example.com/hooks",
        "description": "ERP",
        "events": ["invoice.paid", "credit_note.created"],
    }
    body.update(data)
    return client.post("/settings/webhooks/", body)


def test_a_billing_member_adds_an_endpoint_and_sees_its_secret(logged_in, customer):
    response = _add(logged_in)
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get(customer=customer)
    assert endpoint.events == ["credit_note.created", "invoice.paid"] and endpoint.enabled
    assert endpoint.secret.startswith("whsec_") and len(endpoint.secret) > 30
    page = response.content.decode()
    assert endpoint.secret in page and "https://erp.example.com/hooks" in page
    assert AuditEntry.objects.filter(action="webhook_endpoint.created").count() == 1
    # The list shows it again, without the secret.
    page = logged_in.get("/settings/webhooks/").content.decode()
    assert "https://erp.example.com/hooks" in page and endpoint.secret not in page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"url": "ftp://erp.example.com/"}, "must start with https://"),
        ({"url": "not a url"}, "valid URL"),
        ({"events": []}, "This field is required"),
        ({"events": ["invoice.deleted"]}, "Select a valid choice"),
    ],
)
def test_bad_input_is_named_and_changes_nothing(logged_in, data, message):
    response = _add(logged_in, **data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_private_addresses_are_refused_in_production(logged_in, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    response = _add(logged_in, url="http://10.0.0.5/hooks")
    assert response.status_code == 400
    assert "Private, local and loopback addresses" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_secret_disable_enable_and_delete(logged_in, customer):
    _add(logged_in)
    endpoint = WebhookEndpoint.objects.get()
    detail = logged_in.get(f"/settings/webhooks/{endpoint.pk}/").content.decode()
    assert endpoint.secret not in detail and "Show secret" in detail
    shown = logged_in.post(f"/settings/webhooks/{endpoint.pk}/secret/")
    assert endpoint.secret in shown.content.decode()
    assert shown["Cache-Control"] == "no-store"
    assert AuditEntry.objects.filter(action="webhook_endpoint.secret_revealed").count() == 1

    logged_in.post(f"/settings/webhooks/{endpoint.pk}/disable/")
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "Disabled by" in endpoint.disabled_reason
    page = logged_in.get(f"/settings/webhooks/{endpoint.pk}/").content.decode()
    assert "Disabled by" in page
    logged_in.post(f"/settings/webhooks/{endpoint.pk}/enable/")
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.disabled_reason == ""

    response = logged_in.post(f"/settings/webhooks/{endpoint.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/settings/webhooks/"
    assert not WebhookEndpoint.objects.exists()
    assert AuditEntry.objects.filter(action="webhook_endpoint.deleted").count() == 1


def test_replay_of_a_disabled_endpoint_is_refused_with_a_message(logged_in):
    _add(logged_in)
    endpoint = WebhookEndpoint.objects.get()
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id="evt_1",
        type="invoice.paid",
        audit_entry_id=1,
        object_api_id="in_1",
        payload={"id": "evt_1"},
        status="failed",
        retry_until=timezone.now(),
    )
    logged_in.post(f"/settings/webhooks/{endpoint.pk}/disable/")
    response = logged_in.post(
        f"/settings/webhooks/{endpoint.pk}/deliveries/{delivery.pk}/replay/", follow=True
    )
    assert "Enable the endpoint before replaying" in response.content.decode()
    assert not WebhookAttempt.objects.exists()


def test_the_detail_page_lists_deliveries_in_flat_queries(logged_in, django_assert_max_num_queries):
    _add(logged_in)
    endpoint = WebhookEndpoint.objects.get()
    for n in range(12):
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=f"evt_{n}",
            type="invoice.paid",
            audit_entry_id=n,
            object_api_id="in_1",
            payload={},
            status="pending",
            retry_until=timezone.now(),
        )
        WebhookAttempt.objects.create(delivery=delivery, at=timezone.now(), response_code=503)
    with django_assert_max_num_queries(10):
        response = logged_in.get(f"/settings/webhooks/{endpoint.pk}/")
    page = response.content.decode()
    assert page.count('data-testid="delivery"') == 12
    assert "evt_11" in page and ": 503" in page


def test_the_account_menu_links_the_webhooks_page(logged_in):
    page = logged_in.get("/settings/tokens/").content.decode()
    assert 'href="/settings/webhooks/"' in page
