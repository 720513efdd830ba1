"""The statement PDF in the customer's document language: every cell whole in pypdf's and
pdftotext's reading, money and dates as the language writes them."""

import datetime
import re

import pytest
from django.utils import translation

from billing.payments.statements import statement_build, statement_pdf
from core import l10n
from tests.billing.invoices.document_cases import layout_text, reader
from tests.billing.invoices.pdf_helpers import squash
from tests.billing.payments.test_statements import _history, _sandbox  # noqa: F401

pytestmark = pytest.mark.django_db


def plain(text: str) -> str:
    return text.replace("\u2009", " ").replace("\u202f", " ").replace("\u00a0", " ")


@pytest.mark.parametrize("language", ["en", "de"])
def test_statement_pdf_in_the_customers_language(
    language, customer, django_capture_on_commit_callbacks, tmp_path
):
    customer.document_language = language
    customer.save()
    _history(customer, django_capture_on_commit_callbacks)
    statement = statement_build(
        customer=customer,
        currency="EUR",
        start=datetime.date(2026, 1, 1),
        end=datetime.date(2026, 3, 31),
        today=datetime.date(2026, 4, 20),
    )
    content = statement_pdf(statement)
    text = plain(squash(" ".join(p.extract_text() for p in reader(content).pages)))
    layout = plain(layout_text(content, tmp_path, f"statement-{language}"))

    for line in statement.lines:
        # Date, type and reference are separate cells on one row, each whole.
        day = plain(l10n.date(line.date, language))
        with translation.override(language):
            kind = line.kind_label
        cells = rf"{re.escape(day)}\s+{re.escape(kind)}\s+{re.escape(line.reference)}"
        assert re.search(cells, layout), (cells, layout)
        balance = l10n.amount(line.balance, language)
        assert re.search(rf"\s{re.escape(balance)}\s*$", layout, re.M) or balance in text
    closing = plain(l10n.money(statement.closing, "EUR", language))
    assert closing in text and closing in layout
    if language == "de":
        assert "Kontoauszug" in text and "Endsaldo" in text and "Saldo" in layout
        assert "Rechnungskorrektur" in text and "Erstattung auf Ihr Zahlungsmittel" in text
        january = plain(l10n.period(datetime.date(2026, 1, 1), datetime.date(2026, 1, 31), "de"))
        assert f"Zeitraum {january}" in text
        assert re.search("31\u201360 Tage\\s+119,00 €", layout)
        assert "Seite 1 von 1" in text
        for english in ("Statement of account", "Closing balance", "Invoice", "Period"):
            assert english not in text, english
    else:
        assert "Statement of account" in text and "Closing balance EUR 178.50" in text
        january = plain(l10n.period(datetime.date(2026, 1, 1), datetime.date(2026, 1, 31), "en"))
        assert f"Period {january}" in text
        assert re.search(r"31-60 days\s+€119.00", layout)
