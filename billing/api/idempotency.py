"""Idempotency-Key for API POSTs: the first response is replayed for 24 hours.

The record is inserted before the work starts, so a second request with the same
key that arrives while the first is still running is told so instead of charging
again; the unique constraint on (token, key) is what makes that race-free.
"""

import hashlib
import json

from django.db import IntegrityError, transaction
from django.http import JsonResponse
from django.utils import timezone

from billing.api.models import ApiToken, IdempotencyRecord
from billing.payments.models import IDEMPOTENCY_KEY_TTL

from .errors import ApiError

TTL = IDEMPOTENCY_KEY_TTL
# Answers worth retrying are not kept: the next attempt with the key runs again.
TRANSIENT_STATUSES = frozenset({409, 429, 500, 503})


def fingerprint(path: str, body: dict) -> str:
    canonical = json.dumps({"path": path, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(token: ApiToken, key: str, print_: str) -> JsonResponse | IdempotencyRecord:
    """Start a keyed request: a record to complete, or the response to send instead."""
    if not key or len(key) > 255 or not key.isprintable():
        raise ApiError(
            400,
            "Idempotency-Key must be 1 to 255 printable characters.",
            code="idempotency_key_invalid",
        )
    IdempotencyRecord.objects.filter(
        token=token, key=key, created_at__lt=timezone.now() - TTL
    ).delete()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                token=token, key=key, request_fingerprint=print_
            )
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.get(token=token, key=key)
    if record.request_fingerprint != print_:
        raise ApiError(
            400,
            "Keys for idempotent requests can only be used with the same parameters "
            "they were first used with.",
            type="idempotency_error",
            code="idempotency_key_in_use",
        )
    if record.status_code is None:
        raise ApiError(
            409,
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            type="idempotency_error",
            code="idempotency_request_in_progress",
        )
    response = JsonResponse(record.response_body, status=record.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


def complete(record: IdempotencyRecord, response: JsonResponse) -> None:
    if response.status_code in TRANSIENT_STATUSES:
        record.delete()
        return
    record.status_code = response.status_code
    record.response_body = json.loads(response.content)
    record.save(update_fields=["status_code", "response_body"])
