"""Telling a lost database from a statement that failed."""

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

# SQLSTATEs meaning the server or the connection is gone, not that this statement failed:
# class 08 (connection exception), 57P01-57P03 (shutdown, crash, cannot connect now),
# 53300 (too many connections).
_UNREACHABLE = ("57P01", "57P02", "57P03", "53300")


def database_unreachable(exc: BaseException, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when `exc` says the database connection is lost or refused.

    A deadlock, a lock timeout or a serialization failure (also OperationalError in
    psycopg) concerns one transaction: the next one may well succeed. A lost connection
    concerns every statement after it, so a loop over many items must stop, not record
    each remaining item as failed.
    """
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate.startswith("08") or sqlstate in _UNREACHABLE
    # No SQLSTATE: the server did not answer (a closed socket, a timeout), or the error came
    # from somewhere else. Ask the connection itself.
    conn = connections[using]
    return conn.connection is None or not conn.is_usable()


def copy_rows(table: str, columns: list[str], rows, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Write `rows` (tuples in `columns` order) into `table` with COPY (PostgreSQL).

    Several times faster than a multi-row INSERT for a billing-run chunk: psycopg writes
    the rows in C, where an INSERT's parameters are quoted in Python. The COPY goes through
    Django's cursor wrapper like any statement, so execute wrappers, query counting
    (assertNumQueries, CaptureQueriesContext) and error translation (DatabaseError) see it.
    """
    conn = connections[using]
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"

    def executor(sql, params, many, context):
        conn.validate_no_broken_transaction()
        with conn.wrap_database_errors, context["cursor"].cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    with conn.cursor() as cursor:
        # CursorWrapper has no public hook for COPY; _execute_with_wrappers is the one
        # execute() itself goes through, and debug_sql is what records it in queries_log.
        if hasattr(cursor, "debug_sql"):
            with cursor.debug_sql(sql):
                cursor._execute_with_wrappers(sql, None, False, executor)
        else:
            cursor._execute_with_wrappers(sql, None, False, executor)
