from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from billing.webhooks import stripe_webhook

urlpatterns = [
    path("", RedirectView.as_view(url="/invoices/", permanent=False)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("", include("billing.api.urls")),
    path("stripe/", stripe_webhook, name="stripe-webhook"),
    path("", include("billing.urls")),
    path("", include("contracts.urls")),
]
