from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from billing.payments.webhooks import razorpay_webhook, stripe_webhook
from contracts.auth import (
    ConfirmingLogoutView,
    EmailPasswordResetForm,
    ThrottledAdminAuthenticationForm,
    ThrottledLoginView,
    ThrottledPasswordResetView,
)

# Staff log in through the admin's own view: the same lockout applies there.
admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("", RedirectView.as_view(url="/invoices/", permanent=False)),
    # Before django.contrib.auth.urls so that its "login" name resolves to the throttled view.
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", ConfirmingLogoutView.as_view(), name="logout"),
    path(
        "accounts/password_reset/",
        ThrottledPasswordResetView.as_view(form_class=EmailPasswordResetForm),
        name="password_reset",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    # Django's set_language: POST language + next, sets the language cookie, redirects back
    # (it only follows a `next` on this site).
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("", include("billing.api.urls")),
    path("stripe/", stripe_webhook, name="stripe-webhook"),
    path("razorpay/", razorpay_webhook, name="razorpay-webhook"),
    path("", include("billing.payments.urls")),
    path("", include("billing.collections.urls")),
    path("", include("billing.invoices.urls")),
    path("", include("contracts.urls")),
]
