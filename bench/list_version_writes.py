"""Benchmark: what the invoice list's version triggers add to invoice writes, A/B.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_bench \
        .venv/bin/python bench/list_version_writes.py [--rounds 20]

Needs bench/list_page.py's data (run it once). In each round the same writes run with the
version triggers on invoices enabled and disabled (order alternating; the rollup's triggers
stay on in both): 200 committed single-row UPDATEs of amount_paid, one INSERT of 1,000
invoices and their DELETE. Printed: medians with and without, the ratio of the medians and
the per-round ratios' range. ALTER TABLE ... DISABLE TRIGGER: scratch databases only.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.scratch import use_scratch  # noqa: E402

use_scratch("portal_bench")

import psycopg  # noqa: E402

TRIGGERS = ["invoices_list_inv_upd", "invoices_list_inv_ins", "invoices_list_inv_del"]
INSERT = """
INSERT INTO invoices_invoice (number, customer_id, status, billing_reason, currency,
    period_start, period_end, issue_date, due_date, subtotal, tax, total, amount_paid,
    amount_refunded, bill_to_name, bill_to_address, bill_to_country, bill_to_tax_id,
    bill_to_email, tax_note, paid_out_of_band, state_version, created_at, updated_at,
    buyer_reference, document_language, purchase_order_reference, bill_to_city,
    bill_to_line1, bill_to_line2, bill_to_postal_code, bill_to_state, applied_balance,
    post_payment_credit_notes_amount, pre_payment_credit_notes_amount)
SELECT 'TRG-' || g, %s, 'open', 'subscription_cycle', 'EUR', DATE '2026-01-01',
    DATE '2026-01-31', DATE '2026-01-01', DATE '2026-01-15', 100, 19, 119, 0, 0, '', '',
    'DE', '', '', '', false, 1, now(), now(), '', '', '', '', '', '', '', '', 0, 0, 0
FROM generate_series(1, 1000) AS g
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    url = urlparse(os.environ["DATABASE_URL"])
    conn = psycopg.connect(
        f"postgresql://{url.username}@{url.hostname}:{url.port or 5432}{url.path}",
        autocommit=True,
    )
    cur = conn.cursor()
    found = cur.execute(
        "SELECT id FROM contracts_customer WHERE name = 'Bench Networks GmbH'"
    ).fetchone()
    if not found:
        sys.exit("no bench data: run bench/list_page.py first")
    customer = found[0]
    ids = [
        row[0]
        for row in cur.execute(
            "SELECT id FROM invoices_invoice WHERE customer_id = %s AND status = 'open' "
            "ORDER BY id LIMIT 200",
            [customer],
        )
    ]

    def triggers(on: bool) -> None:
        for name in TRIGGERS:
            cur.execute(
                f"ALTER TABLE invoices_invoice {'ENABLE' if on else 'DISABLE'} TRIGGER {name}"
            )

    def updates(k: int) -> float:
        started = time.perf_counter()
        for pk in ids:
            cur.execute("UPDATE invoices_invoice SET amount_paid = %s WHERE id = %s", [k % 2, pk])
        return (time.perf_counter() - started) * 1000 / len(ids)

    def bulk() -> tuple[float, float]:
        started = time.perf_counter()
        cur.execute(INSERT, [customer])
        inserted = time.perf_counter()
        cur.execute("DELETE FROM invoices_invoice WHERE number LIKE 'TRG-%%'")
        return (inserted - started) * 1000, (time.perf_counter() - inserted) * 1000

    figures = {name: {True: [], False: []} for name in ("update", "insert", "delete")}
    try:
        for r in range(args.rounds):
            for on in (True, False) if r % 2 == 0 else (False, True):
                triggers(on)
                figures["update"][on].append(updates(r))
                ins, dele = bulk()
                figures["insert"][on].append(ins)
                figures["delete"][on].append(dele)
    finally:
        triggers(True)
    labels = {
        "update": "single-row UPDATE, committed (ms each)",
        "insert": "INSERT of 1,000 invoices, one statement (ms)",
        "delete": "DELETE of those 1,000 (ms)",
    }
    print(f"{args.rounds} rounds, interleaved A/B (version triggers on / off)")
    for name, data in figures.items():
        on, off = statistics.median(data[True]), statistics.median(data[False])
        ratios = [a / b for a, b in zip(data[True], data[False], strict=True)]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}, median {statistics.median(ratios):.2f}"
        print(f"{labels[name]:46s} {on:8.3f} / {off:8.3f} = {on / off:.2f}x (per round {spread})")


if __name__ == "__main__":
    main()
