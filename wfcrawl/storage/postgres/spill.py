"""Load PostgreSQL spill files back into the database: ``wfcrawl spill load FILE...``.

When PostgreSQL stays away past ``WFCRAWL_STORAGE_CLOSE_TIMEOUT``, the pipeline writes
the unwritten rows to ``<WFCRAWL_STORAGE_SPILL_DIR>/postgres-<workflow>-<execution>-<pid>.jsonl``,
one ``{"table", "row"}`` per line (:meth:`PgBatch.json_lines`). This module writes
them through the same idempotent upserts as the crawl (:class:`PostgresItemWriter`):
loading a file twice, or after the crawl itself wrote some of its rows, updates rows
instead of adding them, and a row older than the one stored for its key (the fleet
re-crawled the page meanwhile) is not written (``outdated``; it only moves the stored
row's ``first_scraped_at`` back). A file is read whole and checked first: a line
that is not a spill row is reported as ``file:line: message`` and nothing of that file
is written. Database errors worth retrying (PostgreSQL just restarted, a connection
lost) are retried with backoff (``WFCRAWL_STORAGE_RETRY_DELAY`` .. ``_MAX_DELAY``) on
a new connection, for up to ``retry_for`` seconds. A loaded file is renamed
``<name>.loaded``, so that running the command again over the folder skips it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tenacity

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.storage.postgres.connection import is_transient
from wfcrawl.storage.postgres.items import ITEM_COLUMNS, QUARANTINE_COLUMNS, PgBatch, PostgresItemWriter
from wfcrawl.utils.retry import RetryPolicy, retrying

if TYPE_CHECKING:
    from wfcrawl.storage.config import PostgresConfig

logger = logging.getLogger(__name__)


class SpillFileError(ConfigurationError):
    """A spill file that cannot be loaded as it is; ``problems`` are located."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class LoadResult:
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    outdated: int = 0
    quarantined: int = 0
    refused: int = 0


def read_spill(path: Path) -> list[tuple[str, tuple[Any, ...]]]:
    """(table, row values in column order) of every line; raises SpillFileError."""
    rows: list[tuple[str, tuple[Any, ...]]] = []
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpillFileError([f"{path}: cannot read the file: {exc}"]) from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            table, row = entry["table"], entry["row"]
            columns = QUARANTINE_COLUMNS if table == "quarantine" else ITEM_COLUMNS
            if not isinstance(table, str) or not isinstance(row, dict) or set(row) != set(columns):
                raise ValueError(f"expected {{\"table\", \"row\"}} with the columns {', '.join(columns)}")
            rows.append((table, tuple(row[c] for c in columns)))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path}:{number}: not a spill row: {exc}")
    if problems:
        raise SpillFileError(problems)
    return rows


def spill_retrying(config: PostgresConfig, retry_for: float, what: str) -> tenacity.Retrying:
    """Retries of the database errors worth retrying, for ``retry_for`` seconds."""
    policy = RetryPolicy(config.retry.retry_delay, config.retry.retry_max_delay, within=retry_for)
    return retrying(policy, what=what, log=logger, retry_if=is_transient)


def load_spill(path: Path, config: PostgresConfig, *, retry_for: float = 60.0) -> LoadResult:
    """Write the rows of one spill file as the crawl's pipeline would (its
    ``PostgresConfig``: database, schema, batch size, timeouts, migrations);
    rename the file ``<name>.loaded`` once all are committed. Database errors
    worth retrying are retried for ``retry_for`` seconds, then propagate (the file stays)."""
    rows = read_spill(path)
    writer = PostgresItemWriter(config.dsn, config.schema, connect_timeout=config.connect_timeout,
                                statement_timeout=config.statement_timeout)
    retry = spill_retrying(config, retry_for, "PostgreSQL write failed")
    result = LoadResult(rows=len(rows))
    try:
        tables = {table for table, _ in rows if table != "quarantine"}
        retry(writer.prepare, tables, run_migrations=config.migrate)
        for start in range(0, len(rows), config.batch_size):
            batch = PgBatch()
            for table, row in rows[start:start + config.batch_size]:
                if table == "quarantine":
                    batch.add_quarantine(row)
                else:
                    batch.add(table, row)
            written = retry(writer.write, batch)  # idempotent: a batch retried is written once
            result.inserted += written.inserted
            result.updated += written.updated
            result.outdated += written.outdated
            result.quarantined += written.quarantined
            result.refused += written.refused
    finally:
        writer.close()
    path.rename(path.with_name(path.name + ".loaded"))
    return result
