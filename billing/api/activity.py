"""How customers read their API token and webhook endpoint entries (see core.activity)."""

from django.conf import settings
from django.utils.translation import gettext as _

from core.activity import actor_phrase, customer_action


@customer_action("api_token.created", kind="account")
def _created(entry, loaded) -> str:
    values = {
        "name": entry.after.get("name") or entry.object_repr,
        "by": actor_phrase(entry),
        "scopes": ", ".join(entry.after.get("scopes") or []),
    }
    if values["scopes"]:
        return _("API token “%(name)s” created%(by)s (%(scopes)s)") % values
    return _("API token “%(name)s” created%(by)s") % values


@customer_action("api_token.revoked", kind="account")
def _revoked(entry, loaded) -> str:
    return _("API token “%(name)s” revoked%(by)s") % {
        "name": entry.object_repr,
        "by": actor_phrase(entry),
    }


@customer_action("webhook_endpoint.created", kind="account")
def _webhook_created(entry, loaded) -> str:
    events = ", ".join(entry.after.get("events") or [])
    return _("Webhook endpoint %(url)s added%(by)s (%(events)s)") % {
        "url": entry.object_repr,
        "by": actor_phrase(entry),
        "events": events,
    }


@customer_action("webhook_endpoint.deleted", kind="account")
def _webhook_deleted(entry, loaded) -> str:
    return _("Webhook endpoint %(url)s deleted%(by)s") % {
        "url": entry.object_repr,
        "by": actor_phrase(entry),
    }


@customer_action("webhook_endpoint.enabled", kind="account")
def _webhook_enabled(entry, loaded) -> str:
    return _("Webhook endpoint %(url)s enabled%(by)s") % {
        "url": entry.object_repr,
        "by": actor_phrase(entry),
    }


@customer_action("webhook_endpoint.disabled", kind="account")
def _webhook_disabled(entry, loaded) -> str:
    return _("Webhook endpoint %(url)s disabled%(by)s") % {
        "url": entry.object_repr,
        "by": actor_phrase(entry),
    }


@customer_action("webhook_endpoint.disabled_failing", kind="account")
def _webhook_disabled_failing(entry, loaded) -> str:
    return _(
        "Webhook endpoint %(url)s disabled: no event could be delivered to it for %(days)s days"
    ) % {"url": entry.object_repr, "days": settings.WEBHOOK_RETRY_DAYS}
