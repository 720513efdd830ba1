from django.urls import include, path, re_path

from . import token_views, views, webhook_views

app_name = "api"

# ninja's operations without its own schema, docs and root views: the schema and docs
# keep the URLs and names the API had, and every other /api/ URL is a JSON 404.
NINJA_OWN = {"openapi-json", "openapi-view", "api-root"}
operations = [p for p in views.api.urls[0] if p.name not in NINJA_OWN]
for pattern in operations:
    pattern.callback = views.json_405(pattern.callback)

urlpatterns = [
    path("api/", include(operations)),
    re_path(r"^api/schema/?$", views.schema, name="schema"),
    re_path(r"^api/docs/?$", views.docs, name="docs"),
    re_path(r"^api/(?P<rest>.*)$", views.api_not_found),
    path("settings/tokens/", token_views.token_list, name="tokens"),
    path("settings/tokens/<int:pk>/revoke/", token_views.token_revoke_view, name="token-revoke"),
    path("settings/webhooks/", webhook_views.webhook_list, name="webhooks"),
    path("settings/webhooks/<int:pk>/", webhook_views.webhook_detail, name="webhook-detail"),
    path("settings/webhooks/<int:pk>/secret/", webhook_views.webhook_secret, name="webhook-secret"),
    path("settings/webhooks/<int:pk>/enable/", webhook_views.webhook_enable, name="webhook-enable"),
    path(
        "settings/webhooks/<int:pk>/disable/", webhook_views.webhook_disable, name="webhook-disable"
    ),
    path("settings/webhooks/<int:pk>/delete/", webhook_views.webhook_delete, name="webhook-delete"),
    path(
        "settings/webhooks/<int:pk>/deliveries/<int:delivery_pk>/replay/",
        webhook_views.webhook_replay,
        name="webhook-replay",
    ),
]
