import pytest
from django.core import mail

from contracts import services
from contracts.context import SESSION_KEY
from contracts.models import CancellationReason, Membership, Role
from tests.billing.invoices.pages_support import every_status
from tests.factories import CustomerFactory, MembershipFactory, make_contract, make_invoice

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]


@pytest.fixture
def client_owner(client, owner):
    client.force_login(owner)
    return client


def _with_resources(contract):
    for block in contract.blocks.all():
        services.assignment_create(
            contract=contract,
            block=block,
            reference=f"ASSIGN-{block.pk}",
            netname="NET-X",
            actor="t",
        )
        services.rdns_create(
            contract=contract,
            block=block,
            zone=f"{block.pk}.in-addr.arpa",
            nameservers="ns1.example.net",
            actor="t",
        )
    return contract


def test_contract_list_shows_blocks_status_and_price(client_owner, customer, other_customer):
    mine = _with_resources(make_contract(customer, blocks=2, price="350.00"))
    theirs = make_contract(other_customer)
    response = client_owner.get("/contracts/")
    html = response.content.decode()
    assert response.status_code == 200
    assert mine.reference in html and theirs.reference not in html
    for block in mine.blocks.all():
        assert block.prefix in html
    # The price as English writes money (Babel, en_GB); "350,00 €" on a German page.
    assert "€350.00" in html and "Active" in html
    german = client_owner.get("/contracts/", headers={"accept-language": "de"}).content.decode()
    assert "350,00\xa0€" in german and "Aktiv" in german
    assert "IP-Blocks" in html


def test_contract_detail(client_owner, customer):
    contract = _with_resources(make_contract(customer, blocks=2))
    open_invoice = make_invoice(contract)
    response = client_owner.get(f"/contracts/{contract.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    for block in contract.blocks.all():
        assert block.prefix in html
        assert f"ASSIGN-{block.pk}" in html and f"{block.pk}.in-addr.arpa" in html
    assert open_invoice.number in html
    assert f'href="/invoices/{open_invoice.ref}/pdf/"' in html
    assert f'action="/invoices/{open_invoice.ref}/pay/"' in html


def test_contract_detail_invoice_table_statuses(client_owner, customer):
    invoices = every_status(customer)
    paid = invoices["paid"]
    html = client_owner.get(f"/contracts/{paid.contract_id}/").content.decode()
    assert paid.number in html and "/pay/" not in html
    draft = invoices["draft"]
    html = client_owner.get(f"/contracts/{draft.contract_id}/").content.decode()
    assert draft.ref in html and "/pdf/" not in html and "/pay/" not in html


def test_cancelled_contract_shows_removed_resources(client_owner, customer):
    contract = _with_resources(make_contract(customer))
    services.contract_cancel(
        contract_id=contract.pk, reason=CancellationReason.NON_PAYMENT, actor="t"
    )
    html = client_owner.get(f"/contracts/{contract.pk}/").content.decode()
    assert "was cancelled on" in html and "Removed" in html


def test_another_customers_contract_is_404(client_owner, other_customer):
    theirs = make_contract(other_customer)
    assert client_owner.get(f"/contracts/{theirs.pk}/").status_code == 404
    assert client_owner.get("/contracts/999999/").status_code == 404


def test_viewer_cannot_pay_from_contract_page(client, customer):
    contract = make_contract(customer)
    make_invoice(contract)
    client.force_login(MembershipFactory(customer=customer, role=Role.VIEWER).user)
    html = client.get(f"/contracts/{contract.pk}/").content.decode()
    assert "/pay/" not in html and "/pdf/" in html


def test_contract_pages_query_counts_do_not_grow(
    client_owner, customer, django_assert_max_num_queries
):
    small = _with_resources(make_contract(customer, blocks=1))
    make_invoice(small)
    with django_assert_max_num_queries(9) as small_ctx:
        client_owner.get(f"/contracts/{small.pk}/")
    big = _with_resources(make_contract(customer, blocks=5))
    make_invoice(big)
    with django_assert_max_num_queries(9) as big_ctx:
        client_owner.get(f"/contracts/{big.pk}/")
    assert len(big_ctx.captured_queries) == len(small_ctx.captured_queries)

    with django_assert_max_num_queries(6) as list_small:
        client_owner.get("/contracts/")
    for _ in range(5):
        _with_resources(make_contract(customer, blocks=2))
    with django_assert_max_num_queries(6) as list_big:
        client_owner.get("/contracts/")
    assert len(list_big.captured_queries) == len(list_small.captured_queries)


# --- Customer picker ------------------------------------------------------------------


def test_user_with_several_customers_picks_one(client, customer):
    user = MembershipFactory(customer=customer).user
    second = CustomerFactory(name="Zeta Networks")
    Membership.objects.create(user=user, customer=second, role=Role.OWNER)
    theirs = make_contract(second)
    mine = make_contract(customer)
    client.force_login(user)

    page = client.get("/account/customer/")
    assert customer.name in page.content.decode() and "Zeta Networks" in page.content.decode()
    assert client.get(f"/contracts/{theirs.pk}/").status_code == 404

    response = client.post("/account/customer/", {"customer": second.pk, "next": "/contracts/"})
    assert response.status_code == 302 and response["Location"] == "/contracts/"
    assert client.session[SESSION_KEY] == second.pk
    assert client.get(f"/contracts/{theirs.pk}/").status_code == 200
    assert client.get(f"/contracts/{mine.pk}/").status_code == 404


def test_picker_refuses_a_customer_the_user_does_not_belong_to(client, owner, other_customer):
    client.force_login(owner)
    response = client.post("/account/customer/", {"customer": other_customer.pk})
    assert response.status_code == 400
    assert SESSION_KEY not in client.session
    bad = client.post("/account/customer/", {"customer": "x", "next": "https://evil.example/"})
    assert bad.status_code == 400


def test_picker_ignores_an_offsite_next(client, owner, customer):
    client.force_login(owner)
    response = client.post(
        "/account/customer/", {"customer": customer.pk, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/invoices/"


# --- Login and password reset -----------------------------------------------------------


def test_login_page_and_login(client, owner):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'for="id_username"' in page.content
    response = client.post("/accounts/login/", {"username": owner.username, "password": "pw"})
    assert response.status_code == 302 and response["Location"] == "/invoices/"


def test_password_reset_sends_mail(client, owner):
    assert client.get("/accounts/password_reset/").status_code == 200
    response = client.post("/accounts/password_reset/", {"email": owner.email}, follow=True)
    assert b"Check your e-mail" in response.content
    assert len(mail.outbox) == 1 and "/accounts/reset/" in mail.outbox[0].body


def test_logout_is_a_post_form_in_the_header(client_owner):
    html = client_owner.get("/contracts/").content.decode()
    assert 'action="/accounts/logout/"' in html
    assert client_owner.post("/accounts/logout/").status_code == 302


def test_list_counts_live_resources_without_multiplying_them(client_owner, customer):
    from contracts import selectors
    from contracts.models import AssignmentRequest, ResourceStatus

    contract = make_contract(customer, blocks=3)
    for block in contract.blocks.all():
        for n in range(2):
            services.assignment_create(
                contract=contract, block=block, reference=f"R{block.pk}-{n}", netname="N", actor="t"
            )
        services.rdns_create(
            contract=contract, block=block, zone=f"z{block.pk}", nameservers="ns", actor="t"
        )
    AssignmentRequest.objects.filter(pk=contract.assignment_requests.first().pk).update(
        status=ResourceStatus.REMOVED
    )
    (row,) = selectors.contract_list(customer)
    assert (row.live_assignments, row.live_rdns) == (5, 3)
