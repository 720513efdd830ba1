"""Pages in the person's language: the browser's Accept-Language, or the switcher's choice
(Django's set_language, kept in the language cookie), which wins over the browser."""

import pytest
from django.conf import settings

from tests.security.test_redirects import OFF_SITE, _assert_on_site


def _html_lang(response) -> str:
    head = response.content.decode()[:200]
    return head.split('<html lang="', 1)[1].split('"', 1)[0]


@pytest.mark.django_db
def test_english_without_a_preference(client):
    page = client.get("/accounts/login/")
    assert _html_lang(page) == "en"
    # The switcher offers the other language, named in itself.
    assert 'value="de" lang="de">Deutsch</button>' in page.content.decode()


@pytest.mark.django_db
def test_the_browser_language_is_used(client):
    page = client.get("/accounts/login/", headers={"accept-language": "de-DE,de;q=0.9,en;q=0.5"})
    assert _html_lang(page) == "de"
    assert page["Content-Language"] == "de"
    assert 'value="en" lang="en">English</button>' in page.content.decode()


@pytest.mark.django_db
def test_an_unknown_browser_language_falls_back_to_english(client):
    page = client.get("/accounts/login/", headers={"accept-language": "fr-FR,fr;q=0.9"})
    assert _html_lang(page) == "en"


def test_the_choice_wins_over_the_browser_and_is_kept(client, owner):
    client.force_login(owner)
    response = client.post("/i18n/setlang/", {"language": "de", "next": "/contracts/"})
    assert response.status_code == 302
    assert response["Location"] == "/contracts/"
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "de"
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == settings.LANGUAGE_COOKIE_AGE
    page = client.get("/contracts/", headers={"accept-language": "en-GB,en;q=0.9"})
    assert _html_lang(page) == "de"
    back = client.post("/i18n/setlang/", {"language": "en", "next": "/contracts/"})
    assert back.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    assert _html_lang(client.get("/contracts/", headers={"accept-language": "de"})) == "en"


@pytest.mark.django_db
def test_an_unknown_language_changes_nothing(client):
    response = client.post("/i18n/setlang/", {"language": "xx", "next": "/accounts/login/"})
    assert response.status_code == 302
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies


@pytest.mark.django_db
@pytest.mark.parametrize("target", OFF_SITE)
def test_the_switch_never_leaves_the_site(client, target):
    response = client.post("/i18n/setlang/", {"language": "de", "next": target})
    assert response.status_code == 302
    _assert_on_site(response["Location"])


def test_the_switch_returns_to_the_page_without_echoing_its_query(client, owner):
    client.force_login(owner)
    page = client.get("/invoices/", {"q": "INV-<x>", "next": "https://evil.example/"})
    html = page.content.decode()
    switch = html.split('class="language-switch"', 1)[1].split("</form>", 1)[0]
    assert 'name="next" value="/invoices/"' in switch
    assert "evil.example" not in switch
