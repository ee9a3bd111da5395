"""Where scheduler replicas agree on which slots are taken.

A *claim* of ``(workflow, slot)`` succeeds for exactly one caller, ever (Redis
``SET NX``; PostgreSQL ``INSERT ... ON CONFLICT DO NOTHING``). The *cursor* of
a workflow is the latest slot handled (launched or skipped on purpose); it
only moves forward, so a slot behind it is never looked at again.

Both work through PgBouncer in transaction mode and through Redis Cluster
(one workflow's keys share a hash tag); no session state is kept.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any, Protocol

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.storage.postgres.connection import check_connect, psycopg2_module
from wfcrawl.storage.postgres.migrate import migrate


class SlotLock(Protocol):
    def claim(self, workflow: str, slot: datetime, owner: str) -> bool:
        """Take the slot; True for exactly one caller."""

    def release(self, workflow: str, slot: datetime) -> None:
        """Give a claimed slot back (its launch failed; a later tick retries it)."""

    def cursor(self, workflow: str) -> datetime | None:
        """The latest slot handled, or None for a workflow never seen."""

    def advance(self, workflow: str, slot: datetime) -> None:
        """Move the cursor to ``slot`` unless it is already later."""


def _epoch(slot: datetime) -> int:
    return int(slot.timestamp())


def _from_epoch(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value), tz=timezone.utc)


class MemorySlotLock:
    """One process only (``memory://``): replicas in other processes are not seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[tuple[str, int], str] = {}
        self._cursors: dict[str, int] = {}

    def claim(self, workflow: str, slot: datetime, owner: str) -> bool:
        with self._lock:
            return self._claims.setdefault((workflow, _epoch(slot)), owner) == owner

    def release(self, workflow: str, slot: datetime) -> None:
        with self._lock:
            self._claims.pop((workflow, _epoch(slot)), None)

    def cursor(self, workflow: str) -> datetime | None:
        value = self._cursors.get(workflow)
        return None if value is None else _from_epoch(value)

    def advance(self, workflow: str, slot: datetime) -> None:
        with self._lock:
            self._cursors[workflow] = max(self._cursors.get(workflow, 0), _epoch(slot))


_ADVANCE = """
local current = redis.call('GET', KEYS[1])
if not current or tonumber(ARGV[1]) > tonumber(current) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""


class RedisSlotLock:
    """Claims and cursors in Redis: ``<prefix>:schedule:{<workflow>}:slot:<epoch>`` and ``...:cursor``.

    Claims expire after ``claim_ttl`` seconds (default 30 days): by then the
    cursor is far past them, and Redis does not keep every slot forever.
    """

    def __init__(self, client: Any, prefix: str = "wfcrawl", claim_ttl: int = 30 * 24 * 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.claim_ttl = claim_ttl
        self._advance = client.register_script(_ADVANCE)

    @classmethod
    def from_url(cls, url: str, prefix: str = "wfcrawl") -> RedisSlotLock:
        import redis

        return cls(redis.Redis.from_url(url, decode_responses=True), prefix)

    def _key(self, workflow: str, suffix: str) -> str:
        return f"{self.prefix}:schedule:{{{workflow}}}:{suffix}"

    def claim(self, workflow: str, slot: datetime, owner: str) -> bool:
        key = self._key(workflow, f"slot:{_epoch(slot)}")
        return bool(self.client.set(key, owner, nx=True, ex=self.claim_ttl))

    def release(self, workflow: str, slot: datetime) -> None:
        self.client.delete(self._key(workflow, f"slot:{_epoch(slot)}"))

    def cursor(self, workflow: str) -> datetime | None:
        value = self.client.get(self._key(workflow, "cursor"))
        return None if value is None else _from_epoch(value)

    def advance(self, workflow: str, slot: datetime) -> None:
        self._advance(keys=[self._key(workflow, "cursor")], args=[_epoch(slot)])


class PostgresSlotLock:
    """Claims in ``<schema>.schedule_slots`` (also the launch history), cursors in ``<schema>.schedule_cursors``.

    The tables are the migrations' (:mod:`wfcrawl.storage.postgres.migrate`), run
    when the lock connects: replicas starting together migrate once.
    """

    def __init__(self, dsn: str, schema: str = "wfcrawl", connect_timeout: float = 10.0) -> None:
        self.schema = schema
        self.conn = check_connect(dsn, connect_timeout=connect_timeout)
        migrate(self.conn, schema)
        self.conn.autocommit = True  # one statement, one transaction: nothing held between calls
        self._lock = threading.Lock()
        sql = psycopg2_module().sql
        self._slots = sql.Identifier(schema, "schedule_slots")
        self._cursors = sql.Identifier(schema, "schedule_cursors")

    def _run(self, query: str, table: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        statement = psycopg2_module().sql.SQL(query).format(table=table)
        with self._lock, self.conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []

    def claim(self, workflow: str, slot: datetime, owner: str) -> bool:
        rows = self._run(
            "INSERT INTO {table} (workflow, slot, owner) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            self._slots, (workflow, slot, owner),
        )
        return bool(rows)

    def release(self, workflow: str, slot: datetime) -> None:
        self._run("DELETE FROM {table} WHERE workflow = %s AND slot = %s", self._slots, (workflow, slot))

    def cursor(self, workflow: str) -> datetime | None:
        rows = self._run("SELECT slot FROM {table} WHERE workflow = %s", self._cursors, (workflow,))
        return rows[0][0].astimezone(timezone.utc) if rows else None

    def advance(self, workflow: str, slot: datetime) -> None:
        self._run(
            "INSERT INTO {table} AS c (workflow, slot) VALUES (%s, %s) "
            "ON CONFLICT (workflow) DO UPDATE SET slot = GREATEST(c.slot, EXCLUDED.slot)",
            self._cursors, (workflow, slot),
        )

    def close(self) -> None:
        self.conn.close()


def open_lock(url: str, *, prefix: str = "wfcrawl", schema: str = "wfcrawl") -> SlotLock:
    """The lock named by a URL: ``redis://``/``rediss://``, ``postgresql://``/``postgres://``, ``memory://``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisSlotLock.from_url(url, prefix)
    if scheme in ("postgresql", "postgres"):
        return PostgresSlotLock(url, schema)
    if scheme == "memory":
        return MemorySlotLock()
    raise ConfigurationError(
        f"the scheduler's lock URL must be redis://, postgresql:// or memory://, not {url.split(':', 1)[0]}://"
    )
