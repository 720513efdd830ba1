# ruff: noqa: S608 - every name formatted into this SQL is a constant of this module
"""SQL of the triggers that keep InvoiceListVersion (the invoice list's cache version).

Used by the migrations that install them (invoices.0007, payments.0009,
collections.0003): every table whose rows change what the invoice list shows gets
triggers that give the affected customers a new version in the same transaction as the
write. A cached list body is keyed by that version (billing.invoices.list_cache), so a
write no code path announces still makes the next view compute the page again.

PostgreSQL: statement-level triggers with transition tables (a bulk write is one upsert,
rows in customer order so two transactions lock them in the same order); the new version
comes from a sequence (never handed out twice, not even after a rollback); an UPDATE that
changes nothing the list reads (a PDF version bump, paid_at, updated_at) takes no lock.
SQLite (the demo): row-level triggers, a random 64-bit version.

Only table and column names are formatted into this SQL, all of them constants here.
"""

from dataclasses import dataclass

VERSION_TABLE = "invoices_invoicelistversion"

# The invoice columns the list reads (invoice_list_rows loads exactly these and the id; the
# filters and the rollup read among them): an UPDATE that changes none of them leaves the
# version alone.
INVOICE_COLUMNS = (
    "customer_id",
    "number",
    "contract_id",
    "status",
    "currency",
    "period_start",
    "period_end",
    "issue_date",
    "due_date",
    "total",
    "amount_paid",
    "applied_balance",
    "pre_payment_credit_notes_amount",
    "post_payment_credit_notes_amount",
)


@dataclass(frozen=True)
class Watched:
    """A table whose rows the list shows. `customer` is the SQL (with `{r}` for the row)
    of the customer a row belongs to when the table has the column, else `invoice` names
    the invoice column; `columns` are the expressions an UPDATE must change to matter;
    `only` keeps inserted/deleted rows that matter (SQL with `{r}`)."""

    name: str
    table: str
    columns: tuple[str, ...]
    customer: str = ""
    invoice: str = ""
    only: str = ""
    inserts: bool = True


INVOICES = Watched(
    "invoices_list_inv",
    "invoices_invoice",
    tuple(f"{{r}}.{c}" for c in INVOICE_COLUMNS),
    customer="customer_id",
)
# The search reads line descriptions and their blocks.
LINES = Watched(
    "invoices_list_line",
    "invoices_invoiceline",
    ("{r}.invoice_id", "{r}.description", "{r}.block_id"),
    invoice="invoice_id",
)
# A row shows its credit notes' numbers and totals.
CREDIT_NOTES = Watched(
    "invoices_list_cn",
    "invoices_creditnote",
    ("{r}.customer_id", "{r}.invoice_id", "{r}.number", "{r}.total"),
    customer="customer_id",
)
# "Under review": an unresolved report (resolved_at IS NULL, as under_review_q()).
REPORTS = Watched(
    "invoices_list_report",
    "collections_invoicereport",
    ("{r}.invoice_id", "{r}.resolved_at IS NULL"),
    invoice="invoice_id",
    only="{r}.resolved_at IS NULL",
)
# "Payment processing": a payment in status processing (as payment_processing_flag()).
PAYMENTS = Watched(
    "invoices_list_pay",
    "payments_payment",
    ("{r}.invoice_id", "{r}.status = 'processing'"),
    invoice="invoice_id",
    only="{r}.status = 'processing'",
)


# --- PostgreSQL -------------------------------------------------------------------------

# A sequence, not the transaction id: one transaction may write, read the list and write
# again (a test does), and each write must give a value never used before.
_PG_VERSION = "nextval('invoices_list_version_seq')"

PG_FUNCTIONS = f"""
CREATE SEQUENCE invoices_list_version_seq;
-- PL/pgSQL, not SQL functions: PL/pgSQL keeps its statements' plans for the session, a
-- SQL function plans its INSERT again on every call (a few tenths of a ms per write).
CREATE FUNCTION invoices_list_bump(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO {VERSION_TABLE} (customer_id, version)
    SELECT c, {_PG_VERSION}
    FROM (SELECT DISTINCT c FROM unnest(ids) AS c WHERE c IS NOT NULL) AS changed
    ORDER BY c
    ON CONFLICT (customer_id) DO UPDATE SET version = EXCLUDED.version;
END $$;
CREATE FUNCTION invoices_list_bump_invoices(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM invoices_list_bump(ARRAY(
        SELECT DISTINCT customer_id FROM invoices_invoice WHERE id = ANY(ids)));
END $$;
CREATE FUNCTION invoices_list_bump_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {VERSION_TABLE} SET version = {_PG_VERSION};
    RETURN NULL;
END $$;
-- Every customer starts with a version: one without a row is never served from the cache.
INSERT INTO {VERSION_TABLE} (customer_id, version)
SELECT id, {_PG_VERSION} FROM contracts_customer ON CONFLICT DO NOTHING;
"""

PG_FUNCTIONS_DROP = """
DROP FUNCTION IF EXISTS invoices_list_bump_all();
DROP FUNCTION IF EXISTS invoices_list_bump_invoices(bigint[]);
DROP FUNCTION IF EXISTS invoices_list_bump(bigint[]);
DROP SEQUENCE IF EXISTS invoices_list_version_seq;
"""


def _pg_bump(w: Watched, rows_sql: str) -> str:
    if w.customer:
        return f"PERFORM invoices_list_bump(ARRAY({rows_sql}));"
    return f"PERFORM invoices_list_bump_invoices(ARRAY({rows_sql}));"


def pg_install(w: Watched) -> str:
    key = w.customer or w.invoice
    only = f" WHERE {w.only.format(r='r')}" if w.only else ""
    old = ", ".join(c.format(r="o") for c in w.columns)
    new = ", ".join(c.format(r="n") for c in w.columns)
    changed = (
        f"SELECT k FROM old_rows o JOIN new_rows n USING (id), "
        f"LATERAL (VALUES (o.{key}), (n.{key})) AS keys(k) "
        f"WHERE ({old}) IS DISTINCT FROM ({new})"
    )
    sql = f"""
CREATE FUNCTION {w.name}_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_pg_bump(w, changed)}
    RETURN NULL;
END $$;
CREATE TRIGGER {w.name}_upd AFTER UPDATE ON {w.table}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {w.name}_upd();
CREATE TRIGGER {w.name}_trunc AFTER TRUNCATE ON {w.table}
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_list_bump_all();
"""
    if w.inserts:
        for op, when, rows in (("ins", "INSERT", "NEW"), ("del", "DELETE", "OLD")):
            sql += f"""
CREATE FUNCTION {w.name}_{op}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_pg_bump(w, f"SELECT r.{key} FROM {rows.lower()}_rows r{only}")}
    RETURN NULL;
END $$;
CREATE TRIGGER {w.name}_{op} AFTER {when} ON {w.table}
    REFERENCING {rows} TABLE AS {rows.lower()}_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {w.name}_{op}();
"""
    return sql


def pg_uninstall(w: Watched) -> str:
    sql = ""
    for op in ("upd", "trunc", "ins", "del"):
        sql += f"DROP TRIGGER IF EXISTS {w.name}_{op} ON {w.table};\n"
    for op in ("upd", "ins", "del"):
        sql += f"DROP FUNCTION IF EXISTS {w.name}_{op}();\n"
    return sql


# A block's prefix is found by the search: a changed prefix bumps every customer with a
# line on that block (blocks are never deleted while lines point at them).
PG_BLOCKS = """
CREATE FUNCTION invoices_list_block_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM invoices_list_bump(ARRAY(
        SELECT DISTINCT i.customer_id FROM invoices_invoiceline l
        JOIN invoices_invoice i ON i.id = l.invoice_id
        WHERE l.block_id IN (
            SELECT n.id FROM old_rows o JOIN new_rows n USING (id) WHERE o.prefix <> n.prefix)));
    RETURN NULL;
END $$;
CREATE TRIGGER invoices_list_block_upd AFTER UPDATE ON contracts_ipblock
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_list_block_upd();
"""
PG_BLOCKS_DROP = """
DROP TRIGGER IF EXISTS invoices_list_block_upd ON contracts_ipblock;
DROP FUNCTION IF EXISTS invoices_list_block_upd();
"""


# --- SQLite (the demo) ------------------------------------------------------------------


def _sqlite_bump(customers_sql: str) -> str:
    """Statements giving the customers of `customers_sql` (a SELECT of ids named c) a new
    version."""
    return f"""
    INSERT OR IGNORE INTO {VERSION_TABLE} (customer_id, version) SELECT c, 0 FROM ({customers_sql});
    UPDATE {VERSION_TABLE} SET version = random() WHERE customer_id IN ({customers_sql});"""


def _sqlite_customer(w: Watched, row: str) -> str:
    if w.customer:
        return f"SELECT {row}.{w.customer} AS c"
    return f"SELECT customer_id AS c FROM invoices_invoice WHERE id = {row}.{w.invoice}"


def sqlite_install(w: Watched) -> list[str]:
    columns = sorted({c.format(r="X").split(".")[1].split(" ")[0] for c in w.columns})
    only_old = f" WHEN {w.only.format(r='OLD')}" if w.only else ""
    only_new = f" WHEN {w.only.format(r='NEW')}" if w.only else ""
    either = f" WHEN ({w.only.format(r='OLD')}) OR ({w.only.format(r='NEW')})" if w.only else ""
    both = _sqlite_bump(_sqlite_customer(w, "OLD")) + _sqlite_bump(_sqlite_customer(w, "NEW"))
    statements = [
        f"""CREATE TRIGGER {w.name}_upd AFTER UPDATE OF {", ".join(columns)} ON {w.table}{either}
        BEGIN {both} END;"""
    ]
    if w.inserts:
        statements += [
            f"""CREATE TRIGGER {w.name}_ins AFTER INSERT ON {w.table}{only_new}
            BEGIN {_sqlite_bump(_sqlite_customer(w, "NEW"))} END;""",
            f"""CREATE TRIGGER {w.name}_del AFTER DELETE ON {w.table}{only_old}
            BEGIN {_sqlite_bump(_sqlite_customer(w, "OLD"))} END;""",
        ]
    return statements


def sqlite_uninstall(w: Watched) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {w.name}_{op}" for op in ("upd", "ins", "del")]


SQLITE_FUNCTIONS = [
    f"INSERT OR IGNORE INTO {VERSION_TABLE} (customer_id, version) "
    "SELECT id, random() FROM contracts_customer"
]

SQLITE_BLOCKS = [
    f"""CREATE TRIGGER invoices_list_block_upd AFTER UPDATE OF prefix ON contracts_ipblock
    BEGIN {
        _sqlite_bump(
            "SELECT i.customer_id AS c FROM invoices_invoiceline l JOIN invoices_invoice i "
            "ON i.id = l.invoice_id WHERE l.block_id = NEW.id"
        )
    } END;"""
]
SQLITE_BLOCKS_DROP = ["DROP TRIGGER IF EXISTS invoices_list_block_upd"]


def run(schema_editor, postgresql: str, sqlite: list[str]) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(postgresql)
    elif vendor == "sqlite":
        for statement in sqlite:
            schema_editor.execute(statement)
    else:
        raise NotImplementedError(f"invoice list version triggers: no SQL for {vendor}")
