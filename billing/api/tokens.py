"""Services for personal API tokens: create (secret shown once), revoke, authenticate."""

import datetime
import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from billing.api.models import ApiScope, ApiToken
from contracts.models import PAYING_ROLES, Membership
from core.audit import Actor, audit_record
from core.errors import DomainError

TOKEN_PREFIX = "ipl_"
# Writing last_used_at on every request would turn reads into writes; a minute is precise enough.
LAST_USED_PRECISION = datetime.timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(
    *,
    membership: Membership,
    name: str,
    scopes: list[str],
    expires_at: datetime.datetime | None,
    actor: Actor,
) -> tuple[ApiToken, str]:
    """Create a token for the membership's customer; returns it and the secret (shown once)."""
    if not membership.can_pay:
        raise DomainError("Only owners and billing members can create API tokens.", code="role")
    name = (name or "").strip()
    if not name:
        raise DomainError("Give the token a name.", code="name")
    unknown = set(scopes) - set(ApiScope.values)
    if not scopes or unknown:
        raise DomainError("Choose at least one known scope.", code="scopes")
    if expires_at is not None and expires_at <= timezone.now():
        raise DomainError("The expiry must be in the future.", code="expires_at")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            customer=membership.customer,
            user=membership.user,
            name=name[:100],
            prefix=raw[:12],
            token_hash=hash_token(raw),
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
        )
        audit_record(
            actor=actor,
            action="api_token.created",
            target=token,
            customer=membership.customer,
            after={"name": token.name, "scopes": token.scopes, "expires_at": expires_at},
        )
    return token, raw


def token_revoke(*, token_id: int, membership: Membership, actor: Actor) -> ApiToken:
    """Revoke one of the customer's tokens. Quiet when it is already revoked."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token_id, customer=membership.customer)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor, action="api_token.revoked", target=token, customer=membership.customer
            )
    return token


UNKNOWN_TOKEN = "Invalid API token."


def token_authenticate(raw: str) -> tuple[ApiToken | None, str]:
    """The live token for a bearer secret, or (None, why not)."""
    token = (
        ApiToken.objects.select_related("customer", "user")
        .filter(token_hash=hash_token(raw))
        .first()
    )
    now = timezone.now()
    if token is None:
        return None, UNKNOWN_TOKEN
    if token.revoked_at is not None:
        return None, "This API token has been revoked."
    if token.expires_at is not None and token.expires_at <= now:
        return None, "This API token has expired."
    # Tokens are for owners and billing members: one whose owner left, or became a viewer,
    # stops working at once (the same rule token_create applies).
    still_paying = token.customer.memberships.filter(
        user=token.user, role__in=PAYING_ROLES
    ).exists()
    if not token.user.is_active or not still_paying:
        return None, "This API token's owner no longer has access."
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token, ""
