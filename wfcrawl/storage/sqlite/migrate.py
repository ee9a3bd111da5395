"""Versioned migrations of wfcrawl's SQLite schema (as :mod:`wfcrawl.storage.postgres.migrate`).

Migrations are package data (``wfcrawl/storage/sqlite/migrations/NNNN_name.sql``),
applied in version order inside one ``BEGIN IMMEDIATE`` transaction, each recorded in
``schema_migrations``: processes opening the file together migrate it once (the
write lock serialises them) and a failed migration leaves nothing behind.
"""

from __future__ import annotations

import logging
import sqlite3

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.storage.migrations import Migration, load_migrations

logger = logging.getLogger(__name__)


def migrations() -> tuple[Migration, ...]:
    """The SQLite migrations shipped with wfcrawl, in version order."""
    return load_migrations("wfcrawl.storage.sqlite")


def _statements(script: str) -> list[str]:
    # executescript() would commit the open transaction first: run the script's
    # statements one by one inside ours instead.
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise AssertionError(f"incomplete SQL statement in a migration: {pending.strip()[:80]!r}")
    return statements


def migrate(conn: sqlite3.Connection, path: str) -> list[int]:
    """Bring the database up to date; returns the versions applied now (empty if none).

    ``conn`` is in autocommit mode (``isolation_level=None``); ``path`` names the file in messages.
    """
    known = migrations()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        newest = max(applied, default=0)
        if newest > len(known):
            raise ConfigurationError(
                f"SQLite database {path} is at version {newest}, newer than this wfcrawl "
                f"knows ({len(known)}): upgrade wfcrawl"
            )
        done = []
        for migration in known:
            if migration.version in applied:
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                         (migration.version, migration.name))
            done.append(migration.version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if done:
        logger.info("Migrated SQLite database %s to version %d (applied %s)", path, len(known), done)
    return done
