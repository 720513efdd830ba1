"""Paying: Pay online, its return pages, saved methods and the sandbox's pages."""

from django.urls import path

from . import statement_views, views

app_name = "payments"

urlpatterns = [
    path("invoices/<str:number>/pay/", views.invoice_pay, name="invoice-pay"),
    path("invoices/<str:number>/pay/done/", views.checkout_success, name="checkout-success"),
    path("invoices/<str:number>/pay/cancelled/", views.checkout_cancel, name="checkout-cancel"),
    path(
        "invoices/<str:number>/payments/<int:payment_id>/confirm/",
        views.payment_confirm,
        name="payment-confirm",
    ),
    path(
        "invoices/<str:number>/payments/<int:payment_id>/confirmed/",
        views.payment_confirmed,
        name="payment-confirmed",
    ),
    path(
        "invoices/<str:number>/payments/<int:payment_id>/receipt/",
        views.payment_receipt,
        name="payment-receipt",
    ),
    path(
        "invoices/<str:number>/payments/<int:payment_id>/receipt.pdf",
        views.payment_receipt_pdf,
        name="payment-receipt-pdf",
    ),
    path("payment-methods/", views.payment_methods, name="payment-methods"),
    path(
        "payment-methods/<int:method_id>/remove/",
        views.payment_method_remove,
        name="payment-method-remove",
    ),
    path(
        "contracts/<int:contract_id>/payment-method/",
        views.contract_payment_method,
        name="contract-payment-method",
    ),
    path("statements/", statement_views.statement_page, name="statement"),
    path("statements/statement.pdf", statement_views.statement_download_pdf, name="statement-pdf"),
    path("statements/statement.csv", statement_views.statement_download_csv, name="statement-csv"),
    path("sandbox/checkout/<str:token>/", views.sandbox_checkout, name="sandbox-checkout"),
    path("sandbox/setup/<str:token>/", views.sandbox_setup, name="sandbox-setup"),
    path("sandbox/confirm/<str:token>/", views.sandbox_confirm, name="sandbox-confirm"),
]
