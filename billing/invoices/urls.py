"""Invoice pages and documents (ARCHITECTURE.md §6)."""

from django.urls import path

from . import views
from .documents import views as document_views

app_name = "invoices"

urlpatterns = [
    path("invoices/", views.invoice_list, name="invoice-list"),
    path("invoices/export.csv", views.invoice_export_csv, name="invoice-export-csv"),
    path("invoices/download.zip", document_views.invoice_download_zip, name="invoice-download-zip"),
    path("invoices/<str:number>/", views.invoice_detail, name="invoice-detail"),
    path("invoices/<str:number>/pdf/", document_views.invoice_pdf, name="invoice-pdf"),
    path(
        "invoices/<str:number>/pay/pdf/",
        document_views.invoice_pdf_for_link,
        name="invoice-pdf-for-link",
    ),
    path("credit-notes/<str:number>/", views.credit_note_detail, name="credit-note-detail"),
    path("credit-notes/<str:number>/pdf/", document_views.credit_note_pdf, name="credit-note-pdf"),
    path("invoices/<str:number>/xml/", document_views.invoice_xml, name="invoice-xml"),
    path("credit-notes/<str:number>/xml/", document_views.credit_note_xml, name="credit-note-xml"),
]
