import io
import zipfile

import pytest
from django.urls import reverse

from billing.invoices.documents import pdf as documents
from billing.invoices.documents.pdf import invoice_pdf_document
from billing.invoices.documents.views import MAX_ZIP_INVOICES
from billing.invoices.documents.zipstream import stream_invoice_zip
from contracts.models import Role
from tests.billing.invoices.pdf_helpers import pdf_text
from tests.factories import MembershipFactory, make_invoice

pytestmark = pytest.mark.django_db
URL = reverse("invoices:invoice-download-zip")


@pytest.fixture
def client_of(client, owner):
    client.force_login(owner)
    return client


def _zip(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_three_invoices_give_three_pdfs_named_by_number(client_of, customer):
    invoices = [make_invoice(customer=customer) for _ in range(3)]
    numbers = [inv.number for inv in invoices]

    response = client_of.post(URL, {"numbers": numbers})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="invoices-')
    archive = _zip(response)
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == sorted(f"{n}.pdf" for n in numbers)
    for invoice in invoices:
        content = archive.read(f"{invoice.number}.pdf")
        assert content == invoice_pdf_document(invoice).content
        assert invoice.number in pdf_text(content)


def test_numbers_may_be_comma_or_space_separated_and_repeated(client_of, customer):
    a, b, c = (make_invoice(customer=customer) for _ in range(3))
    response = client_of.post(
        URL, {"numbers": [f"{a.number}, {b.number}", f"{c.number}\n{a.number}"]}
    )
    assert response.status_code == 200
    assert sorted(_zip(response).namelist()) == sorted(f"{i.number}.pdf" for i in (a, b, c))


def test_a_foreign_number_refuses_the_whole_download(client_of, customer, other_customer):
    mine = make_invoice(customer=customer)
    theirs = make_invoice(customer=other_customer)

    response = client_of.post(URL, {"numbers": f"{mine.number},{theirs.number},INV-1999-9"})

    assert response.status_code == 404
    assert not response.streaming
    body = response.content.decode()
    assert "not among your invoices" in body
    assert theirs.number in body and "INV-1999-9" in body
    assert f"<li>{mine.number}</li>" not in body


def test_more_than_500_is_refused_with_a_clear_message(client_of):
    numbers = [f"INV-2026-{i:06d}" for i in range(MAX_ZIP_INVOICES + 1)]
    response = client_of.post(URL, {"numbers": ",".join(numbers)})
    assert response.status_code == 400
    assert "at most 500" in response.content.decode()


@pytest.mark.parametrize("payload", [{}, {"numbers": ""}, {"numbers": " , "}])
def test_nothing_selected_is_a_clear_message(client_of, payload):
    response = client_of.post(URL, payload)
    assert response.status_code == 400
    assert "Select at least one invoice" in response.content.decode()


def test_drafts_are_refused(client_of, customer):
    final = make_invoice(customer=customer)
    draft = make_invoice(customer=customer, finalize=False)
    response = client_of.post(URL, {"numbers": [final.number, draft.ref]})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Drafts are not final invoices" in body and draft.ref in body


def test_get_is_not_allowed_and_login_is_required(client, owner):
    assert client.post(URL, {"numbers": "INV-2026-000001"}).status_code == 302
    client.force_login(owner)
    assert client.get(URL).status_code == 405


def test_a_viewer_may_download_a_zip(client, customer):
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    invoice = make_invoice(customer=customer)
    response = client.post(URL, {"numbers": invoice.number})
    assert response.status_code == 200
    assert _zip(response).namelist() == [f"{invoice.number}.pdf"]


def test_the_stream_yields_one_chunk_per_document_and_reads_the_cache(customer, monkeypatch):
    invoices = [make_invoice(customer=customer) for _ in range(4)]
    for invoice in invoices:
        documents.invoice_pdf_render(invoice_id=invoice.pk)
    monkeypatch.setattr(documents, "render_invoice_pdf_bytes", lambda *a: 1 / 0)

    chunks = list(stream_invoice_zip(invoices))

    assert len(chunks) == len(invoices) + 1, "one chunk per PDF, then the central directory"
    largest_pdf = max(invoice_pdf_document(i).size for i in invoices)
    assert max(len(c) for c in chunks[:-1]) < largest_pdf + 1024
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())


def test_query_count_of_the_zip_does_not_grow_with_cached_invoices(
    client_of, customer, django_assert_max_num_queries
):
    invoices = [make_invoice(customer=customer) for _ in range(6)]
    for invoice in invoices:
        documents.invoice_pdf_render(invoice_id=invoice.pk)
    # session, user, membership, invoices, their lines and tax lines (+ savepoints)
    with django_assert_max_num_queries(7):
        response = client_of.post(URL, {"numbers": [i.number for i in invoices]})
        assert len(_zip(response).namelist()) == 6


def test_an_uncached_zip_costs_the_same_queries_for_2_or_6_invoices(
    client_of, customer, django_assert_max_num_queries, settings, tmp_path
):
    batches = {n: [make_invoice(customer=customer).number for _ in range(n)] for n in (2, 6)}
    for n, numbers in batches.items():
        settings.MEDIA_ROOT = tmp_path / f"empty-{n}"  # nothing cached: every PDF renders
        with django_assert_max_num_queries(7):
            response = client_of.post(URL, {"numbers": numbers})
            assert len(_zip(response).namelist()) == n
