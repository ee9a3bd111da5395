"""Load PostgreSQL spill files back into the database: ``wfcrawl spill load FILE...``.

When PostgreSQL stays away past ``WFCRAWL_STORAGE_CLOSE_TIMEOUT``, the pipeline writes
the unwritten rows to ``<WFCRAWL_STORAGE_SPILL_DIR>/postgres-<workflow>-<execution>-<pid>.jsonl``,
one ``{"table", "row"}`` per line (:meth:`PgBatch.json_lines`). This module writes
them through the same idempotent upserts as the crawl (:class:`PostgresItemWriter`):
loading a file twice, or after the crawl itself wrote some of its rows, updates rows
instead of adding them. A file is read whole and checked first: a line that is not
a spill row is reported as ``file:line: message`` and nothing of that file is
written. A loaded file is renamed ``<name>.loaded``, so that running the command
again over the folder skips it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.storage.pgitems import ITEM_COLUMNS, QUARANTINE_COLUMNS, PgBatch, PostgresItemWriter

if TYPE_CHECKING:
    from wfcrawl.pipelines.postgres import PostgresConfig


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


def load_spill(path: Path, config: PostgresConfig) -> LoadResult:
    """Write the rows of one spill file as the crawl's pipeline would (its
    ``PostgresConfig``: database, schema, batch size, timeouts, migrations);
    rename the file ``<name>.loaded`` once all are committed. Database errors
    worth retrying propagate (the file stays)."""
    rows = read_spill(path)
    writer = PostgresItemWriter(config.dsn, config.schema, connect_timeout=config.connect_timeout,
                                statement_timeout=config.statement_timeout)
    result = LoadResult(rows=len(rows))
    try:
        writer.prepare({table for table, _ in rows if table != "quarantine"}, run_migrations=config.migrate)
        for start in range(0, len(rows), config.batch_size):
            batch = PgBatch()
            for table, row in rows[start:start + config.batch_size]:
                if table == "quarantine":
                    batch.add_quarantine(row)
                else:
                    batch.add(table, row)
            written = writer.write(batch)
            result.inserted += written.inserted
            result.updated += written.updated
            result.quarantined += written.quarantined
            result.refused += written.refused
    finally:
        writer.close()
    path.rename(path.with_name(path.name + ".loaded"))
    return result
