from django.urls import path, re_path

from . import token_views, views

app_name = "api"

urlpatterns = [
    # Trailing slashes are optional: an API client should not get a redirect on POST.
    re_path(r"^api/invoices/?$", views.invoice_list, name="invoice-list"),
    re_path(r"^api/invoices/(?P<invoice_id>[^/]+)/?$", views.invoice_detail, name="invoice-detail"),
    re_path(r"^api/invoices/(?P<invoice_id>[^/]+)/pay/?$", views.invoice_pay, name="invoice-pay"),
    re_path(
        r"^api/invoices/(?P<invoice_id>[^/]+)/report/?$",
        views.invoice_report,
        name="invoice-report",
    ),
    re_path(r"^api/schema/?$", views.schema, name="schema"),
    re_path(r"^api/(?P<rest>.*)$", views.api_not_found),
    path("settings/tokens/", token_views.token_list, name="tokens"),
    path("settings/tokens/<int:pk>/revoke/", token_views.token_revoke_view, name="token-revoke"),
]
