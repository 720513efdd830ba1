"""The one way to write an audit entry; services call it inside their transaction."""

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import models

from .models import AuditEntry

# Who acted: a user, or a label naming the system part ("billing run", "stripe webhook").
Actor = AbstractBaseUser | str | None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def audit_entry(
    *,
    actor: Actor,
    action: str,
    target: models.Model,
    customer: models.Model | None = None,  # a contracts.Customer
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    note: str = "",
) -> AuditEntry:
    """The entry audit_record writes, unsaved: for audit_record_many."""
    user = actor if isinstance(actor, AbstractBaseUser) else None
    label = str(actor.get_username()) if user else (actor or "system")
    return AuditEntry(
        actor=user,
        actor_label=label[:64],
        customer=customer,
        action=action,
        content_type=ContentType.objects.get_for_model(target, for_concrete_model=False),
        object_id=str(target.pk),
        object_repr=str(target)[:200],
        before=_plain(before or {}),
        after=_plain(after or {}),
        note=note,
    )


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
    entry = audit_entry(
        actor=actor,
        action=action,
        target=target,
        customer=customer,
        before=before,
        after=after,
        note=note,
    )
    entry.save(force_insert=True)
    return entry


def audit_record_many(entries: list[AuditEntry]) -> None:
    """Write entries built by audit_entry in one INSERT (the billing run: two per invoice)."""
    AuditEntry.objects.bulk_create(entries)
