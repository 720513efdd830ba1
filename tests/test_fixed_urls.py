"""{% fixed_url %}: a view's URL reversed once, still following the script prefix."""

from django.template import Context, Template
from django.urls import reverse, set_script_prefix


def _render(name: str) -> str:
    return Template('{% load fixed_urls %}{% fixed_url "' + name + '" %}').render(Context())


def test_it_is_the_url_reverse_gives():
    for name in ("invoices:invoice-list", "contracts:activity", "set_language", "logout"):
        assert _render(name) == reverse(name)


def test_a_script_prefix_is_followed_not_frozen():
    plain = _render("invoices:invoice-list")
    set_script_prefix("/portal/")
    try:
        assert _render("invoices:invoice-list") == "/portal" + plain
    finally:
        set_script_prefix("/")
    assert _render("invoices:invoice-list") == plain
