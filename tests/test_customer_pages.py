"""Every customer page renders finished: no template syntax in what a person reads.

The invoice list once printed an internal comment ("{# Everything of /invoices/ … #}")
because a `{# #}` comment spanned two lines; Django only knows one-line `{# #}`.
"""

import pathlib

import pytest
from django.conf import settings
from django.template import Engine
from django.template.base import Lexer, TokenType

from tests.customer_pages import (
    LONELY,
    OWNER,
    VIEWER,
    build_world,
    template_syntax_in,
    visible_text,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]


def _template_files() -> list[pathlib.Path]:
    roots = [pathlib.Path(d) for d in settings.TEMPLATES[0]["DIRS"]]
    roots += [p for p in pathlib.Path(settings.BASE_DIR).glob("*/templates")]
    roots += [p for p in pathlib.Path(settings.BASE_DIR).glob("billing/*/templates")]
    return sorted(f for root in roots for f in root.rglob("*") if f.suffix in (".html", ".txt"))


def test_every_template_file_is_found():
    names = {f.name for f in _template_files()}
    assert {"base.html", "invoice_list.html", "invoice.html", "receipt.txt"} <= names


@pytest.mark.parametrize("path", _template_files(), ids=lambda p: str(p.name))
def test_no_template_tag_or_comment_spans_lines(path):
    """Django's lexer leaves a multi-line `{# #}`, `{% %}` or `{{ }}` in the text as is:
    find them in every template (pages, e-mails, PDFs), not only on the pages we render."""
    source = path.read_text()
    Engine.get_default()  # the lexer is the engine's own
    leftovers = [
        token.contents[:60]
        for token in Lexer(source).tokenize()
        if token.token_type == TokenType.TEXT and template_syntax_in(token.contents)
    ]
    assert not leftovers, f"{path}: template syntax left as text: {leftovers}"


@pytest.fixture
def world():
    return build_world()


def _check(client, name, path, data=None):
    # Followed: the password reset link redirects to the page that asks for the password.
    response = client.get(path, follow=True) if data is None else client.post(path, data)
    assert response.status_code in (200, 400, 403, 404), (name, response.status_code)
    html = response.content.decode()
    found = template_syntax_in(visible_text(html))
    assert not found, f"{name} ({path}) shows {found} to the customer"
    return html


def test_every_customer_page_shows_no_template_syntax(client, world):
    for name, path in world.public_pages + world.link_pages:
        _check(client, name, path)
    client.login(username=OWNER, password="pages-password")
    for name, path in world.member_pages:
        _check(client, name, path)
    for form in world.member_forms:
        _check(client, form.name, form.action, form.data)
    client.logout()
    client.login(username=VIEWER, password="pages-password")
    for name, path in world.viewer_pages:
        _check(client, name, path)
    client.logout()
    client.login(username=LONELY, password="pages-password")
    for name, path in world.lonely_pages:
        _check(client, name, path)


def test_the_invoice_list_no_longer_prints_its_internal_comment(client, world):
    client.login(username=OWNER, password="pages-password")
    html = client.get("/invoices/").content.decode()
    assert "cached per customer version" not in html
    assert "Everything of /invoices/" not in visible_text(html)


def test_the_error_page_is_finished_too():
    from django.template.loader import render_to_string

    text = visible_text(render_to_string("500.html"))
    assert "Something went wrong" in text and not template_syntax_in(text)


def test_the_pages_behind_links_and_forms_show_what_they_are_for(client, world):
    """Each of these pages is reached through a redirect, a signed token or a form: a
    broken step would show another page (the bad link, the form again) and still pass the
    checks above."""
    pages = dict(world.public_pages + world.link_pages + world.member_pages)
    new_password = client.get(pages["password-reset-new"], follow=True)
    assert new_password.redirect_chain[-1][0].endswith("/set-password/")
    assert 'name="new_password1"' in new_password.content.decode()
    checkout = client.get(pages["hosted-sandbox-checkout"]).content.decode()
    assert world.invoices["link_checkout"].number in checkout
    assert "account-menu" not in checkout, "the link's holder is not logged in"
    client.login(username=OWNER, password="pages-password")
    assert 'value="approve"' in client.get(pages["sandbox-3ds"]).content.decode()
    shows = {"api-token-created": "new-token", "webhook-created": "new-secret"}
    shows["webhook-secret"] = "secret"
    for form in world.member_forms:
        html = client.post(form.action, form.data).content.decode()
        assert f'data-testid="{shows[form.name]}"' in html, form.name
