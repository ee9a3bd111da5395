"""Batched, idempotent item writes into PostgreSQL (runs in a worker thread).

One batch is one transaction: rows are COPYed into a transaction-local staging
table (``ON COMMIT DROP``) and upserted with ``INSERT ... ON CONFLICT DO UPDATE``
on ``(workflow, item_type, item_key)``. A retried batch, or a re-crawl, updates
rows instead of adding them; a batch that was committed but whose COMMIT reply
was lost is simply written again. Works through PgBouncer in transaction mode.

Nothing here touches the reactor: :class:`wfcrawl.pipelines.postgres.PostgresPipeline`
builds the batches and calls :meth:`PostgresItemWriter.write` in its thread.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wfcrawl.exceptions import first_line
from wfcrawl.storage.postgres.connection import (
    check_table_name,
    connect,
    interrupt,
    is_transient,
    psycopg2_module,
    qualified,
    transaction,
)
from wfcrawl.storage.postgres.migrate import migrate
from wfcrawl.storage.serialize import dumps

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection  # noqa: N812
    from psycopg2.extensions import cursor as Cursor  # noqa: N812

logger = logging.getLogger(__name__)

#: Item row: workflow, item_type, item_key, execution_id, url, phase, depth,
#: markers (array literal), scraped_at (ISO text), item (JSON text).
ItemRow = tuple[str, str, str, str, str, str, int, str, str, str]
#: Quarantine row: the item row's first nine values (url .. scraped_at may be
#: None), then reason, errors (JSON text), item (JSON text).
QuarantineRow = tuple[Any, ...]

ITEM_COLUMNS = (
    "workflow", "item_type", "item_key", "execution_id", "url", "phase", "depth", "markers",
    "scraped_at", "item",
)
QUARANTINE_COLUMNS = (*ITEM_COLUMNS[:-1], "reason", "errors", "item")

_STAGE = """CREATE TEMP TABLE wfcrawl_stage (
    workflow text, item_type text, item_key text, execution_id text, url text, phase text,
    depth integer, markers text[], scraped_at timestamptz, item jsonb
) ON COMMIT DROP"""

#: Columns an upsert takes from the newer row.
_NEWER = ("execution_id", "url", "phase", "depth", "markers", "scraped_at", "item")

# The newest scrape of a key wins, whatever the order rows arrive in (a spill file
# loaded after the fleet re-crawled its pages, an instance whose batch was late):
# an older row only moves first_scraped_at back, a row older than both changes nothing
# (the WHERE: not updated, not returned, counted as outdated).
_UPSERT = """WITH up AS (
    INSERT INTO {table} AS t (workflow, item_type, item_key, execution_id, url, phase, depth,
                              markers, scraped_at, first_scraped_at, item)
    SELECT workflow, item_type, item_key, execution_id, url, phase, depth, markers, scraped_at,
           scraped_at, item
    FROM wfcrawl_stage
    ORDER BY item_type, item_key  -- one lock order for every writer: no deadlocks between instances
    ON CONFLICT (workflow, item_type, item_key) DO UPDATE SET
        """ + ", ".join(
    f"{c} = CASE WHEN EXCLUDED.scraped_at >= t.scraped_at THEN EXCLUDED.{c} ELSE t.{c} END" for c in _NEWER
) + """,
        first_scraped_at = LEAST(t.first_scraped_at, EXCLUDED.scraped_at)
    WHERE EXCLUDED.scraped_at >= t.scraped_at OR EXCLUDED.scraped_at < t.first_scraped_at
    RETURNING (xmax = 0) AS inserted
) SELECT count(*) FILTER (WHERE inserted), count(*) FROM up"""

_QUARANTINE = """INSERT INTO {table} AS q (workflow, item_type, item_key, execution_id, url, phase,
                                  depth, markers, scraped_at, reason, errors, item)
VALUES %s
ON CONFLICT (workflow, item_type, item_key) DO UPDATE SET
    execution_id = EXCLUDED.execution_id, url = EXCLUDED.url, phase = EXCLUDED.phase,
    depth = EXCLUDED.depth, markers = EXCLUDED.markers, scraped_at = EXCLUDED.scraped_at,
    reason = EXCLUDED.reason, errors = EXCLUDED.errors, item = EXCLUDED.item, quarantined_at = now()"""
_QUARANTINE_TEMPLATE = "(%s, %s, %s, %s, %s, %s, %s, %s::text[], %s::timestamptz, %s, %s::jsonb, %s::jsonb)"


def markers_literal(markers: Any) -> str:
    """A text[] literal; every element quoted, so any text round-trips."""
    if not markers:
        return "{}"
    quoted = ('"' + str(m).replace("\\", "\\\\").replace('"', '\\"') + '"' for m in markers)
    return "{" + ",".join(quoted) + "}"


_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _field(value: str) -> str:
    return value.translate(_ESCAPES) if _SPECIAL.search(value) else value


def copy_text(rows: Any) -> str:
    """Item rows in COPY's text format (tab-separated, backslash escapes).

    Cheaper than CSV for JSON, which is full of quotes CSV would double: JSON
    text has no raw tabs or newlines, only backslashes to escape.
    """
    lines = []
    for r in rows:
        item = r[9].replace("\\", "\\\\") if "\\" in r[9] else r[9]
        lines.append(
            f"{_field(r[0])}\t{_field(r[1])}\t{_field(r[2])}\t{_field(r[3])}\t{_field(r[4])}\t{_field(r[5])}"
            f"\t{int(r[6])}\t{_field(r[7])}\t{_field(r[8])}\t{item}\n"
        )
    return "".join(lines)


@dataclass
class PgBatch:
    """Rows of one transaction. Keyed so that a key seen twice keeps its last row
    (an upsert may not touch one row twice in a statement)."""

    items: dict[str, dict[tuple[str, str], ItemRow]] = field(default_factory=dict)
    quarantine: dict[tuple[str, str], QuarantineRow] = field(default_factory=dict)
    size: int = 0
    superseded: int = 0

    def add(self, table: str, row: ItemRow) -> None:
        rows = self.items.setdefault(table, {})
        key = (row[1], row[2])
        if key in rows:
            self.superseded += 1
        else:
            self.size += 1
        rows[key] = row

    def add_quarantine(self, row: QuarantineRow) -> None:
        key = (row[1], row[2])
        if key in self.quarantine:
            self.superseded += 1
        else:
            self.size += 1
        self.quarantine[key] = row

    def __len__(self) -> int:
        return self.size

    def json_lines(self) -> list[str]:
        """The rows as JSON lines (``{"table", "row"}``): the spill file format."""
        out = [
            json.dumps({"table": table, "row": dict(zip(ITEM_COLUMNS, row, strict=True))}, ensure_ascii=False)
            for table, rows in self.items.items() for row in rows.values()
        ]
        out.extend(
            json.dumps({"table": "quarantine", "row": dict(zip(QUARANTINE_COLUMNS, row, strict=True))}, ensure_ascii=False)
            for row in self.quarantine.values()
        )
        return out


@dataclass(frozen=True)
class WriteResult:
    inserted: int = 0
    updated: int = 0
    quarantined: int = 0
    refused: int = 0  # item rows the database refused, quarantined as db_error
    outdated: int = 0  # item rows not written: a newer scrape of their key is stored


class PostgresItemWriter:
    """Writes :class:`PgBatch` es; one connection, used by one thread at a time."""

    def __init__(
        self, dsn: str, schema: str, *, connect_timeout: float = 10.0,
        statement_timeout: float = 60.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._conn: Connection | None = None
        # Guards replacing and closing _conn (never held during a query): interrupt()
        # runs in another thread and must not shut down a reused file descriptor.
        self._guard = threading.Lock()

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            conn = connect(self.dsn, connect_timeout=self.connect_timeout)
            with self._guard:
                self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._guard:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def interrupt(self) -> None:
        """From another thread: make the call in progress fail now (:func:`interrupt`)."""
        with self._guard:
            interrupt(self._conn)

    def prepare(self, tables: set[str], *, run_migrations: bool = True) -> None:
        """Connect, migrate, create the workflow's own item tables (start of a crawl)."""
        sql = psycopg2_module().sql
        conn = self._connection()
        if run_migrations:
            migrate(conn, self.schema)
        extra = sorted(check_table_name(t) for t in tables if t != "items")
        if extra:
            with transaction(conn) as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"wfcrawl.tables:{self.schema}",))
                for table in extra:
                    cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING ALL)").format(
                        qualified(self.schema, table), qualified(self.schema, "items")
                    ))

    def write(self, batch: PgBatch) -> WriteResult:
        """Write one batch in one transaction; raises only errors worth retrying.

        Rows the database refuses (data or integrity errors) are found one by
        one and quarantined with the database's message, never dropped.
        """
        try:
            result: WriteResult = self._attempt(lambda cur: self._write(cur, batch))
            return result
        except Exception as exc:
            if is_transient(exc):
                raise
            logger.warning("PostgreSQL refused a batch (%s); writing its rows one by one", first_line(exc))
            return self._write_isolated(batch)

    def _attempt(self, work: Any) -> Any:
        conn = self._connection()
        try:
            with transaction(conn, statement_timeout=self.statement_timeout) as cur:
                return work(cur)
        except Exception as exc:
            if is_transient(exc):
                # The connection may be broken in ways psycopg2 has not noticed yet.
                self.close()
            raise

    def _write(self, cur: Cursor, batch: PgBatch) -> WriteResult:
        sql = psycopg2_module().sql
        inserted = total = staged_rows = 0
        staged = False
        for table, rows in batch.items.items():
            if not rows:
                continue
            cur.execute("TRUNCATE wfcrawl_stage" if staged else _STAGE)
            staged = True
            cur.copy_expert("COPY wfcrawl_stage FROM STDIN", io.StringIO(copy_text(rows.values())))
            cur.execute(sql.SQL(_UPSERT).format(table=qualified(self.schema, table)))
            new, count = cur.fetchone()
            inserted += new
            total += count
            staged_rows += len(rows)
        if batch.quarantine:
            self._quarantine(cur, list(batch.quarantine.values()))
        return WriteResult(inserted, total - inserted, len(batch.quarantine), outdated=staged_rows - total)

    def _quarantine(self, cur: Cursor, rows: list[QuarantineRow]) -> None:
        psycopg2 = psycopg2_module()
        query = psycopg2.sql.SQL(_QUARANTINE).format(table=qualified(self.schema, "quarantine"))
        psycopg2.extras.execute_values(cur, query.as_string(cur), rows, template=_QUARANTINE_TEMPLATE)

    def _write_isolated(self, batch: PgBatch) -> WriteResult:
        inserted = updated = refused = outdated = 0
        quarantine = dict(batch.quarantine)
        for table, rows in batch.items.items():
            for key, row in rows.items():
                single = PgBatch()
                single.add(table, row)
                try:
                    result = self._attempt(lambda cur, b=single: self._write(cur, b))
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    refused += 1
                    error = {"path": "$", "validator": "database", "message": first_line(exc)}
                    # Keep only what cannot be refused again: text columns, NULL timestamp.
                    quarantine[key] = (
                        *row[:6], row[6], None, None, "db_error", dumps([error])[0],
                        dumps({"row": dict(zip(ITEM_COLUMNS, row, strict=True))})[0],
                    )
                    continue
                inserted += result.inserted
                updated += result.updated
                outdated += result.outdated
        if quarantine:
            rows_q = list(quarantine.values())
            self._attempt(lambda cur: self._quarantine(cur, rows_q))
        return WriteResult(inserted, updated, len(quarantine), refused, outdated)
