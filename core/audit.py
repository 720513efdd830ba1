"""The one way to write an audit entry; services call it inside their transaction."""

import datetime
import json
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import models

from .db import copy_rows
from .models import AuditEntry

# Who acted: a user, or a label naming the system part ("billing run", "stripe webhook").
Actor = AbstractBaseUser | str | None


def audit_plain(value: Any) -> Any:
    """What an entry's before/after stores for a value: JSON's types, anything else as str."""
    return _plain(value)


def audit_actor(actor: Actor) -> tuple[AbstractBaseUser | None, str]:
    """The entry's user (or None) and its label."""
    user = actor if isinstance(actor, AbstractBaseUser) else None
    label = str(actor.get_username()) if user else (actor or "system")
    return user, label[:64]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: models.Model,
    customer: models.Model | None = None,  # a contracts.Customer
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    note: str = "",
) -> AuditEntry:
    user, label = audit_actor(actor)
    entry = AuditEntry(
        actor=user,
        actor_label=label,
        customer=customer,
        action=action,
        content_type=ContentType.objects.get_for_model(target, for_concrete_model=False),
        object_id=str(target.pk),
        object_repr=str(target)[:200],
        before=_plain(before or {}),
        after=_plain(after or {}),
        note=note,
    )
    entry.save(force_insert=True)
    return entry


def audit_row(
    *,
    actor: Actor,
    action: str,
    content_type: ContentType,
    object_id: int | str,
    object_repr: str,
    customer_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    note: str = "",
    at: datetime.datetime,
) -> dict[str, Any]:
    """The entry audit_record writes, as the table's values (no model instance): for
    audit_copy_many, where a chunk of the billing run writes hundreds at once."""
    user, label = audit_actor(actor)
    return {
        "created_at": at,
        "actor_id": user.pk if user else None,
        "actor_label": label,
        "customer_id": customer_id,
        "action": action,
        "content_type_id": content_type.pk,
        "object_id": str(object_id),
        "object_repr": object_repr[:200],
        # AuditEntry's JSONFields store json.dumps of the value (no encoder).
        "before": json.dumps(_plain(before or {})),
        "after": json.dumps(_plain(after or {})),
        "note": note,
    }


def audit_copy_many(rows: list[dict[str, Any]]) -> None:
    """Write entries built by audit_row with one COPY (PostgreSQL)."""
    if not rows:
        return
    columns = list(rows[0])
    fields = {f.attname: f.column for f in AuditEntry._meta.concrete_fields}
    assert set(fields) - {"id"} == set(columns), "audit_row must give every column"
    copy_rows(
        AuditEntry._meta.db_table,
        [fields[c] for c in columns],
        [tuple(row[c] for c in columns) for row in rows],
    )
