"""Placeholder: the PDF issue builds the download view."""

from django.http import HttpResponse


def invoice_pdf(request, number):
    return HttpResponse("Not built yet.", status=501, content_type="text/plain")
