"""Versioned SQL migrations of wfcrawl's PostgreSQL schema.

Migrations are package data: ``wfcrawl/storage/postgres/migrations/NNNN_name.sql``,
applied in version order, each recorded in ``<schema>.schema_migrations``.
Everything happens in one transaction holding a transaction-level advisory
lock, so instances starting together migrate once, a failed migration leaves
nothing behind, and it works through PgBouncer in transaction mode (no session
state: the schema is named with ``SET LOCAL search_path``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.storage.migrations import Migration, load_migrations
from wfcrawl.storage.postgres.connection import psycopg2_module, transaction

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection  # noqa: N812

logger = logging.getLogger(__name__)


def migrations() -> tuple[Migration, ...]:
    """The PostgreSQL migrations shipped with wfcrawl, in version order."""
    return load_migrations("wfcrawl.storage.postgres")


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
