"""{% fixed_url "name" %}: the URL of a view that takes no arguments, reversed once.

Django's {% url %} reverses on every use (about 40 µs here); the site header and the invoice
list use 17 of them per page, together more than a first view's rows query. A URL without
arguments only changes with the URLconf and the script prefix, so it is kept per
(name, URLconf, prefix). URLs with arguments stay {% url %}.
"""

from functools import lru_cache

from django import template
from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse

register = template.Library()


@lru_cache(maxsize=256)
def _reversed(name: str, urlconf: str, prefix: str) -> str:
    return reverse(name, urlconf=urlconf)


@register.simple_tag
def fixed_url(name: str) -> str:
    return _reversed(name, get_urlconf() or settings.ROOT_URLCONF, get_script_prefix())
