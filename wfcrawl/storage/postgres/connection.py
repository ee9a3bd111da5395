"""PostgreSQL connections that are safe behind PgBouncer in transaction pooling mode.

Rules every wfcrawl query follows (PgBouncer hands each *transaction* to any
server connection, so nothing may outlive one):

- no session state: no ``SET`` (only ``SET LOCAL`` inside a transaction), no
  session advisory locks (``pg_advisory_xact_lock`` only), no prepared
  statements, no ``WITH HOLD`` cursors, temporary tables only ``ON COMMIT DROP``;
- no ``options`` startup parameter (PgBouncer refuses it);
- every identifier that does not come from our own code (schema setting, table
  names from a workflow) is validated and quoted with :class:`psycopg2.sql.Identifier`.

psycopg2 is imported lazily: it is the ``postgres`` extra.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from wfcrawl.exceptions import ConfigurationError, DatabaseUnreachableError, first_line
from wfcrawl.workflow.itemspecs import RESERVED_TABLES

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection  # noqa: N812
    from psycopg2.extensions import cursor as Cursor  # noqa: N812

logger = logging.getLogger(__name__)

#: Names of tables a workflow may choose (``items.<type>.table``): lower-case
#: SQL identifiers that never need quoting (they are quoted anyway).
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_URI_PASSWORD = re.compile(r"://[^:/@]*:([^@]*)@")


def psycopg2_module() -> Any:
    try:
        import psycopg2
        import psycopg2.extras  # execute_values, Json
        import psycopg2.sql
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            "DATABASE_URL is set but psycopg2 is not installed: pip install 'wfcrawl[postgres]'"
        ) from None
    return psycopg2


def parse_dsn(dsn: str, setting: str = "DATABASE_URL") -> dict[str, str]:
    """The DSN's parameters; a :class:`ConfigurationError` naming the setting if it is invalid."""
    psycopg2 = psycopg2_module()
    try:
        params: dict[str, str] = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        message = first_line(exc)
        # libpq quotes the whole URI in some messages: never show its password.
        password = _URI_PASSWORD.search(dsn)
        if password and password[1]:
            message = message.replace(password[1], "***")
        raise ConfigurationError(f"{setting} is not a valid PostgreSQL DSN: {message}") from None
    return params


def describe_dsn(dsn: str) -> str:
    """``user@host:port/dbname``, never the password (for messages and logs)."""
    try:
        p = parse_dsn(dsn)
    except ConfigurationError:
        return "<invalid DSN>"
    host = p.get("host", "localhost")
    return f"{p.get('user', '')}@{host}:{p.get('port', '5432')}/{p.get('dbname', '')}".lstrip("@")


def connect(dsn: str, *, connect_timeout: float = 10.0, setting: str = "DATABASE_URL") -> Connection:
    """A new connection (autocommit off: each ``with conn:`` block is one transaction)."""
    psycopg2 = psycopg2_module()
    parse_dsn(dsn, setting)
    conn = psycopg2.connect(
        dsn, connect_timeout=max(1, int(connect_timeout)), application_name="wfcrawl"
    )
    return conn


def check_connect(dsn: str, *, connect_timeout: float = 10.0, setting: str = "DATABASE_URL") -> Connection:
    """:func:`connect`, turning a failure into a message an operator can act on."""
    psycopg2 = psycopg2_module()
    try:
        return connect(dsn, connect_timeout=connect_timeout, setting=setting)
    except psycopg2.Error as exc:
        raise DatabaseUnreachableError(
            f"cannot connect to PostgreSQL at {describe_dsn(dsn)} ({setting}): {first_line(exc)}"
        ) from None


@contextmanager
def transaction(conn: Connection, *, statement_timeout: float | None = None) -> Iterator[Cursor]:
    """One transaction: commit on success, roll back on error.

    ``statement_timeout`` is applied with ``SET LOCAL`` (the PgBouncer-safe way:
    it ends with the transaction). The error that ended the transaction is the one
    raised: when the connection is gone, the rollback fails too (``connection already
    closed``), and that failure only goes to the debug log (psycopg2's own ``with conn:``
    would raise it instead, hiding the real cause).
    """
    try:
        with conn.cursor() as cur:
            if statement_timeout:
                cur.execute("SET LOCAL statement_timeout = %s", (f"{int(statement_timeout * 1000)}ms",))
            yield cur
    except BaseException:
        try:
            conn.rollback()
        except Exception as exc:
            logger.debug("rollback failed: %s: %s", type(exc).__name__, first_line(exc))
        raise
    conn.commit()


def interrupt(conn: Connection | None) -> None:
    """From another thread: end what ``conn`` waits for (a query PgBouncer holds until its
    ``query_wait_timeout``, a reply that never comes) by shutting its socket down; the
    waiting call then fails with ``OperationalError`` (the server closed the connection).

    psycopg2 cannot cancel such a wait itself (``conn.close()`` waits for the call to
    end, ``conn.cancel()`` is ignored by PgBouncer for a client still waiting for a
    server), and no libpq timeout covers it (the socket is alive). The caller makes
    sure ``conn`` is not closed meanwhile (its file descriptor could be reused)."""
    if conn is None or conn.closed:
        return
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except (OSError, ValueError):
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down
    finally:
        sock.close()


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same statements later may succeed.

    Data and integrity errors are a property of the rows (retrying cannot
    help); everything else (connection lost, server restarting, PgBouncer
    errors, a missing table an operator may restore, deadlocks; a connection
    :func:`check_connect` could not make) is retried.
    """
    psycopg2 = psycopg2_module()
    if isinstance(exc, (psycopg2.DataError, psycopg2.IntegrityError)):
        return False
    return isinstance(exc, (psycopg2.Error, DatabaseUnreachableError))


def check_table_name(name: str) -> str:
    if not TABLE_NAME.match(name):
        raise ConfigurationError(f"invalid table name {name!r}: must match {TABLE_NAME.pattern}")
    if name in RESERVED_TABLES:
        raise ConfigurationError(f"table name {name!r} is reserved by wfcrawl")
    return name


def qualified(schema: str, table: str) -> Any:
    """``"schema"."table"`` as a composable (both parts quoted)."""
    sql = psycopg2_module().sql
    return sql.Identifier(schema, table)
