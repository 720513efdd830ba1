from django.urls import path

from . import views

app_name = "collections"

urlpatterns = [
    path("invoices/<str:number>/report/", views.invoice_report, name="invoice-report"),
]
