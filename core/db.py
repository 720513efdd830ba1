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
