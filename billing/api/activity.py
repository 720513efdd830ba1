"""How customers read their API token entries (see core.activity)."""

from core.activity import actor_phrase, customer_action


@customer_action("api_token.created", kind="account")
def _created(entry, loaded) -> str:
    name = entry.after.get("name") or entry.object_repr
    scopes = ", ".join(entry.after.get("scopes") or [])
    return f"API token “{name}” created{actor_phrase(entry)}" + (f" ({scopes})" if scopes else "")


@customer_action("api_token.revoked", kind="account")
def _revoked(entry, loaded) -> str:
    return f"API token “{entry.object_repr}” revoked{actor_phrase(entry)}"
