"""The German catalogue: complete, its placeholders intact, and the committed .mo compiled
from the committed .po (the portal runs on the .mo; nothing compiles it at start-up)."""

import io
from pathlib import Path

from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from django.conf import settings

LOCALE = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES"


def _po():
    with open(LOCALE / "django.po", "rb") as fh:
        return read_po(fh)


def test_every_message_is_translated_and_keeps_its_placeholders():
    catalog = _po()
    # A plural's string is a tuple of forms: every form must be there.
    untranslated = [
        m.id
        for m in catalog
        if m.id and not (m.string if isinstance(m.string, str) else all(m.string))
    ]
    assert untranslated == []
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert fuzzy == []
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert problems == []


def test_the_committed_mo_is_compiled_from_the_committed_po():
    fresh = io.BytesIO()
    write_mo(fresh, _po())
    fresh.seek(0)
    with open(LOCALE / "django.mo", "rb") as fh:
        committed = read_mo(fh)
    expected = read_mo(fresh)
    assert _messages(committed) == _messages(expected), (
        "run `make messages` and commit locale/de/LC_MESSAGES/django.mo"
    )


def _messages(catalog) -> dict:
    """msgid -> msgstr; a plural's forms (lists in a read .mo) as tuples, to compare."""

    def frozen(value):
        return tuple(value) if isinstance(value, list | tuple) else value

    return {frozen(m.id): frozen(m.string) for m in catalog if m.id}
