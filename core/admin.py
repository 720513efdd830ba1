"""Admin helpers every app uses, and the read-only audit log."""

from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from .models import AuditEntry


class ReadOnlyObjectPageMixin:
    """The object's own page is read-only, so it shows no Save buttons and refuses a POST.

    Without an object (the change list, its actions) the model's change permission still
    counts: actions declared with ``permissions=["change"]`` stay available to staff who
    hold it, and only to them.
    """

    def has_change_permission(self, request, obj=None):
        if obj is not None:
            return False
        return super().has_change_permission(request)


class ReadOnlyAdmin(ReadOnlyObjectPageMixin, admin.ModelAdmin):
    """Money records are written by services only; staff read them here (and run actions,
    which go through the services, with the model's change permission)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _shown(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_shown(v)}" for k, v in value.items()) or "—"
    return str(value)


def audit_changes(before: dict, after: dict) -> list[str]:
    """Each field an entry records, as "name: before → after" (or just its value when it
    only has one side), in the order the entry lists them."""
    before, after = before or {}, after or {}
    lines = []
    for name in dict.fromkeys([*before, *after]):
        if name in before and name in after:
            old, new = _shown(before[name]), _shown(after[name])
            lines.append(f"{name}: {new}" if old == new else f"{name}: {old} → {new}")
        elif name in after:
            lines.append(f"{name}: {_shown(after[name])}")
        else:
            lines.append(f"{name}: {_shown(before[name])} → —")
    return lines


def audit_trail(obj) -> str:
    """Read-only HTML list of an object's audit entries, newest first."""
    if not obj or not obj.pk:
        return "—"
    return audit_list(
        AuditEntry.objects.filter(
            content_type__app_label=obj._meta.app_label,
            content_type__model=obj._meta.model_name,
            object_id=str(obj.pk),
        )
    )


def audit_list(entries, limit: int = 50) -> str:
    """Read-only HTML list of audit entries, newest first: who, when, what, and each field
    it changed on a line of its own as "name: before → after"."""
    items = []
    for e in list(entries[:limit]):
        changes = format_html_join(
            "", "<li>{}</li>", ((line,) for line in audit_changes(e.before, e.after))
        )
        items.append(
            format_html(
                '<li class="audit-entry">{} · {} · <strong>{}</strong>{}{}{}</li>',
                f"{e.created_at:%Y-%m-%d %H:%M}",
                e.actor_label,
                e.action,
                f" {e.object_repr}" if e.action.startswith("membership.") else "",
                format_html("<ul>{}</ul>", changes) if changes else "",
                format_html("<div><em>Note:</em> {}</div>", e.note) if e.note else "",
            )
        )
    if not items:
        return "No entries yet."
    return format_html("<ul>{}</ul>", format_html_join("", "{}", ((i,) for i in items)))


def report(request, done: list[str], errors: list[str]) -> None:
    """Tell staff what an admin action did, one line per object that failed."""
    if done:
        messages.success(request, f"Done: {', '.join(done)}.")
    for error in errors:
        messages.error(request, error)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_label", "action", "object_link", "customer"]
    list_filter = ["action", "content_type"]
    search_fields = ["object_repr", "actor_label", "action", "object_id", "note"]
    list_select_related = ["customer", "content_type"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Object")
    def object_link(self, obj):
        ct = obj.content_type
        try:
            url = reverse(f"admin:{ct.app_label}_{ct.model}_change", args=[obj.object_id])
        except NoReverseMatch:  # models without an admin page show plain text
            return obj.object_repr
        return format_html('<a href="{}">{}</a>', url, obj.object_repr)
