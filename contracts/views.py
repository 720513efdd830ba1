"""Placeholder: the customer pages issue builds these views."""

from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse("Not built yet.", status=501, content_type="text/plain")


contract_list = contract_detail = customer_switch = no_customer = _todo
