"""Versioned SQL migrations of wfcrawl's PostgreSQL schema.

Migrations are package data: ``wfcrawl/storage/migrations/NNNN_name.sql``,
applied in version order, each recorded in ``<schema>.schema_migrations``.
Everything happens in one transaction holding a transaction-level advisory
lock, so instances starting together migrate once, a failed migration leaves
nothing behind, and it works through PgBouncer in transaction mode (no session
state: the schema is named with ``SET LOCAL search_path``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.storage.connection import psycopg2_module, transaction

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection  # noqa: N812

logger = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@lru_cache(maxsize=1)
def migrations() -> tuple[Migration, ...]:
    """The migrations shipped with wfcrawl, in version order."""
    found = []
    for entry in resources.files("wfcrawl.storage").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise AssertionError(f"migration versions must be 1..N without gaps: {[m.version for m in found]}")
    return tuple(found)


def migrate(conn: Connection, schema: str) -> list[int]:
    """Bring ``schema`` up to date; returns the versions applied now (empty if none)."""
    sql = psycopg2_module().sql
    known = migrations()
    with transaction(conn) as cur:
        # Serialises concurrent starts; released at commit (PgBouncer-safe).
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"wfcrawl.migrate:{schema}",))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema, "schema_migrations"))
        )
        cur.execute(sql.SQL("SELECT version FROM {}").format(sql.Identifier(schema, "schema_migrations")))
        applied = {row[0] for row in cur.fetchall()}
        newest = max(applied, default=0)
        if newest > len(known):
            raise ConfigurationError(
                f"PostgreSQL schema {schema!r} is at version {newest}, newer than this wfcrawl "
                f"knows ({len(known)}): upgrade wfcrawl"
            )
        done = []
        for migration in known:
            if migration.version in applied:
                continue
            cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            cur.execute(migration.sql)
            cur.execute(
                sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                    sql.Identifier(schema, "schema_migrations")
                ),
                (migration.version, migration.name),
            )
            done.append(migration.version)
    if done:
        logger.info("Migrated PostgreSQL schema %r to version %d (applied %s)", schema, len(known), done)
    return done
