"""/stripe/ keeps a sample of refused requests, not every one: one stored row per client
address and minute counting the attempts, and 429 past the per-minute limit."""

import datetime
import json

import pytest
import time_machine

from billing.payments.models import WebhookEvent, WebhookEventStatus
from tests.fixtures.stripe.helpers import WEBHOOK_SECRET, sign

pytestmark = pytest.mark.django_db

START = datetime.datetime(2026, 6, 5, 12, 0, 5, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def _stripe(settings):
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_WEBHOOK_INVALID_PER_MINUTE = 20


def _unsigned(client, body="x" * 100_000, ip="198.51.100.9"):
    return client.post("/stripe/", data=body, content_type="application/json", REMOTE_ADDR=ip)


def _signed(client, payload: str):
    return client.post(
        "/stripe/",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(payload, timestamp=int(START.timestamp())),
    )


def test_a_flood_of_unsigned_requests_stores_one_sample_a_minute(client):
    with time_machine.travel(START, tick=False) as traveller:
        statuses = [_unsigned(client).status_code for _ in range(30)]
        assert statuses == [400] * 20 + [429] * 10
        sample = WebhookEvent.objects.get()
        assert sample.status == WebhookEventStatus.INVALID
        assert sample.deliveries == 20
        assert len(sample.body) <= 4_000
        assert "198.51.100.9" in sample.note
        # Another address has its own count and sample.
        assert _unsigned(client, ip="203.0.113.4").status_code == 400
        assert WebhookEvent.objects.count() == 2
        traveller.shift(datetime.timedelta(minutes=1))
        assert _unsigned(client).status_code == 400
        assert WebhookEvent.objects.count() == 3


def test_a_body_with_a_nul_byte_is_sampled_not_a_500(client):
    assert _unsigned(client, body="\x00{\x00}").status_code == 400
    assert "\x00" not in WebhookEvent.objects.get().body


def test_with_the_cache_down_nothing_is_stored_and_the_answer_is_still_400(client, monkeypatch):
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "add", broken)
    assert _unsigned(client).status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize(
    "event",
    [
        {"object": "event", "type": "payment_intent.succeeded", "data": {"object": {}}},
        {"id": "", "type": "x", "data": {"object": {}}},
        {"id": 7, "type": "x", "data": {"object": {}}},
        {"id": "evt_\u0000", "type": "x", "data": {"object": {}}},
        {"id": "evt_no_data", "type": "x", "data": []},
        {"id": "evt_bad_type", "type": ["x"], "data": {"object": {}}},
    ],
    ids=["no-id", "empty-id", "int-id", "nul-id", "data-list", "type-list"],
)
def test_a_signed_event_without_a_usable_id_or_shape_is_a_400(client, event):
    with time_machine.travel(START, tick=False):
        response = _signed(client, json.dumps(event))
    assert response.status_code == 400
    stored = WebhookEvent.objects.get()
    assert stored.status == WebhookEventStatus.INVALID and stored.event_id is None


def test_a_signed_event_nested_5000_deep_is_a_400(client):
    with time_machine.travel(START, tick=False):
        response = _signed(client, "[" * 5000 + "]" * 5000)
    assert response.status_code == 400


def test_a_signed_json_array_is_a_400(client):
    with time_machine.travel(START, tick=False):
        assert _signed(client, "[]").status_code == 400
