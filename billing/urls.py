"""Customer-facing billing URLs (ARCHITECTURE.md §6). Views live in one module per concern:
pages in billing.views, documents in billing.pdf.views, money in billing.payment_views."""

from django.urls import path

from . import payment_views, views
from .pdf import views as pdf_views

app_name = "billing"

urlpatterns = [
    path("invoices/", views.invoice_list, name="invoice-list"),
    path("invoices/export.csv", views.invoice_export_csv, name="invoice-export-csv"),
    path("invoices/download.zip", pdf_views.invoice_download_zip, name="invoice-download-zip"),
    path("invoices/<str:number>/", views.invoice_detail, name="invoice-detail"),
    path("invoices/<str:number>/pdf/", pdf_views.invoice_pdf, name="invoice-pdf"),
    path("invoices/<str:number>/pay/", payment_views.invoice_pay, name="invoice-pay"),
    path("payment-methods/", payment_views.payment_methods, name="payment-methods"),
]
urlpatterns += [
    path(
        "invoices/<str:number>/pay/done/",
        payment_views.checkout_success,
        name="checkout-success",
    ),
    path(
        "invoices/<str:number>/pay/cancelled/",
        payment_views.checkout_cancel,
        name="checkout-cancel",
    ),
    path(
        "invoices/<str:number>/payments/<int:payment_id>/confirm/",
        payment_views.payment_confirm,
        name="payment-confirm",
    ),
    path(
        "invoices/<str:number>/payments/<int:payment_id>/confirmed/",
        payment_views.payment_confirmed,
        name="payment-confirmed",
    ),
    path("sandbox/checkout/<str:token>/", payment_views.sandbox_checkout, name="sandbox-checkout"),
    path("sandbox/confirm/<str:token>/", payment_views.sandbox_confirm, name="sandbox-confirm"),
    path("sandbox/setup/<str:token>/", payment_views.sandbox_setup, name="sandbox-setup"),
]
