import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from contracts import services
from contracts.models import (
    AssignmentRequest,
    BlockStatus,
    CancellationReason,
    ContractStatus,
    IPBlock,
    RdnsDelegation,
    ResourceStatus,
)
from core.errors import DomainError, InvalidTransition
from core.models import AuditEntry
from tests.factories import make_block, make_contract

pytestmark = pytest.mark.django_db


def test_prefix_is_canonical_and_ranged():
    block = make_block("192.0.2.0/24")
    assert (block.prefix, block.size, block.status) == ("192.0.2.0/24", 256, BlockStatus.AVAILABLE)
    assert AuditEntry.objects.filter(action="ipblock.created", object_id=str(block.pk)).exists()


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("192.0.2.1/24", "host bits set; did you mean 192.0.2.0/24?"),
        ("192.0.2.0", "CIDR form"),
        ("300.0.0.0/8", "not a valid CIDR prefix"),
        ("2001:db8::/32", "Only IPv4"),
    ],
)
def test_bad_prefixes_are_refused_and_nothing_is_created(prefix, message):
    with pytest.raises(ValidationError, match=message.replace("?", r"\?")):
        make_block(prefix)
    assert not IPBlock.objects.exists()


def test_overlap_with_a_live_block_is_refused_but_not_with_a_deactivated_one():
    outer = make_block("198.51.100.0/23")
    with pytest.raises(ValidationError, match=r"overlaps 198\.51\.100\.0/23"):
        make_block("198.51.101.0/24")
    IPBlock.objects.filter(pk=outer.pk).update(status=BlockStatus.DEACTIVATED)
    assert make_block("198.51.101.0/24").prefix == "198.51.101.0/24"


def test_contract_leases_its_blocks(customer):
    contract = make_contract(customer, blocks=2, price="250", currency="usd")
    assert contract.currency == "USD"
    assert contract.price_per_block == Decimal("250.00")
    assert set(contract.blocks.values_list("status", flat=True)) == {BlockStatus.LEASED}
    assert contract.next_billing_date == contract.started_on


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"price_per_block": "-1"}, "cannot be negative"),
        ({"price_per_block": "abc"}, "must be a number"),
        ({"currency": "XYZ"}, "Unknown currency"),
        ({"block_ids": []}, "at least one block"),
        ({"block_ids": [999999]}, "does not exist"),
    ],
)
def test_contract_bad_input_changes_nothing(customer, kwargs, message):
    block = make_block()
    args = {
        "customer": customer,
        "block_ids": [block.pk],
        "price_per_block": "10",
        "currency": "EUR",
        "started_on": datetime.date(2026, 1, 1),
        "actor": "test",
        **kwargs,
    }
    with pytest.raises(DomainError, match=message):
        services.contract_create(**args)
    block.refresh_from_db()
    assert block.status == BlockStatus.AVAILABLE
    assert not customer.contracts.exists()


def test_a_leased_block_cannot_be_leased_again(customer):
    contract = make_contract(customer)
    block = contract.blocks.get()
    with pytest.raises(DomainError, match=f"Not available for lease: {block.prefix}"):
        services.contract_create(
            customer=customer,
            block_ids=[block.pk],
            price_per_block="1",
            currency="EUR",
            started_on=datetime.date(2026, 1, 1),
            actor="test",
        )
    assert customer.contracts.count() == 1


def test_cancel_deactivates_blocks_and_removes_resources_once(customer):
    contract = make_contract(customer, blocks=2)
    blocks = list(contract.blocks.all())
    for block in blocks:
        services.assignment_create(
            contract=contract, block=block, reference="R", netname="N", actor="t"
        )
        services.rdns_create(contract=contract, block=block, zone="z", nameservers="ns1", actor="t")

    services.contract_cancel(
        contract_id=contract.pk, reason=CancellationReason.NON_PAYMENT, actor="t"
    )
    services.contract_cancel(
        contract_id=contract.pk, reason=CancellationReason.NON_PAYMENT, actor="t"
    )

    contract.refresh_from_db()
    assert contract.status == ContractStatus.CANCELLED
    assert contract.cancellation_reason == CancellationReason.NON_PAYMENT
    assert contract.cancelled_at is not None
    assert set(IPBlock.objects.filter(contracts=contract).values_list("status", flat=True)) == {
        BlockStatus.DEACTIVATED
    }
    for model in (AssignmentRequest, RdnsDelegation):
        rows = model.objects.filter(contract=contract)
        assert rows.count() == 2, "kept as history"
        assert set(rows.values_list("status", flat=True)) == {ResourceStatus.REMOVED}
    assert AuditEntry.objects.filter(action="contract.cancelled").count() == 1
    assert AuditEntry.objects.filter(action="ipblock.deactivated").count() == 2
    assert AuditEntry.objects.filter(action="assignmentrequest.removed").count() == 2


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [
        (ContractStatus.ACTIVE, ContractStatus.PAST_DUE, True),
        (ContractStatus.PAST_DUE, ContractStatus.ACTIVE, True),
        (ContractStatus.ACTIVE, ContractStatus.CANCELLED, True),
        (ContractStatus.PAST_DUE, ContractStatus.CANCELLED, True),
        (ContractStatus.CANCELLED, ContractStatus.ACTIVE, False),
        (ContractStatus.CANCELLED, ContractStatus.PAST_DUE, False),
    ],
)
def test_contract_transition_table(customer, start, target, allowed):
    contract = make_contract(customer)
    type(contract).objects.filter(pk=contract.pk).update(status=start)
    contract.refresh_from_db()
    if allowed:
        services._set_contract_status(contract, target, actor="t")
        assert contract.status == target
        contract.refresh_from_db()
        assert contract.status == target, "saved, not only set"
    else:
        with pytest.raises(InvalidTransition, match="cannot become"):
            services._set_contract_status(contract, target, actor="t")


def test_past_due_and_restore_are_quiet_when_already_there(customer):
    contract = make_contract(customer)
    services.contract_restore(contract_id=contract.pk, actor="t")
    services.contract_mark_past_due(contract_id=contract.pk, actor="t")
    services.contract_mark_past_due(contract_id=contract.pk, actor="t")
    contract.refresh_from_db()
    assert contract.status == ContractStatus.PAST_DUE
    assert AuditEntry.objects.filter(action="contract.past_due").count() == 1


def test_resources_only_for_the_contracts_own_blocks(customer):
    contract = make_contract(customer)
    stranger = make_block()
    with pytest.raises(DomainError, match="is not part of"):
        services.assignment_create(
            contract=contract, block=stranger, reference="x", netname="y", actor="t"
        )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL exclusion constraint")
def test_database_refuses_overlapping_live_blocks_that_skip_the_service():
    make_block("203.0.113.0/24")
    with pytest.raises(IntegrityError), transaction.atomic():
        IPBlock.objects.create(
            prefix="203.0.113.128/25", first_address=3405803904, last_address=3405804031
        )
    dead = IPBlock.objects.get(prefix="203.0.113.0/24")
    IPBlock.objects.filter(pk=dead.pk).update(status=BlockStatus.DEACTIVATED)
    IPBlock.objects.create(
        prefix="203.0.113.128/25", first_address=3405803904, last_address=3405804031
    )
