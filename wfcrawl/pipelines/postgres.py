"""Items into PostgreSQL: batched, idempotent, off the reactor, nothing lost.

Enabled by ``DATABASE_URL`` (setting or environment variable). At start the
database is reached and migrated, or the crawl fails with a clear message.
Items are buffered into batches (flushed at ``WFCRAWL_POSTGRES_BATCH_SIZE``
rows or every ``WFCRAWL_POSTGRES_FLUSH_INTERVAL`` seconds) written by
``WFCRAWL_POSTGRES_WRITERS`` worker threads
(:class:`wfcrawl.storage.postgres.items.PostgresItemWriter`, one connection
each) as upserts keyed by ``(workflow, item_type, _key)``. Retries,
back-pressure (``WFCRAWL_POSTGRES_MAX_PENDING`` rows), durability reports and
the close (spill file after ``WFCRAWL_STORAGE_CLOSE_TIMEOUT``, writes still waiting
interrupted) are the :class:`~wfcrawl.pipelines.buffered.BufferedSink`'s. The newest
scrape of a key wins: an older row arriving later is not written (``items/outdated``).

Items dropped as invalid (:class:`wfcrawl.pipelines.validation.InvalidItem`)
go to the ``quarantine`` table with their validation errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from scrapy.crawler import Crawler

from wfcrawl.exceptions import first_line
from wfcrawl.items import KEY, ItemKeys, fields_of, provenance, type_of
from wfcrawl.pipelines.buffered import BufferedSink
from wfcrawl.storage.config import PostgresConfig
from wfcrawl.storage.postgres.connection import describe_dsn
from wfcrawl.storage.postgres.items import PgBatch, PostgresItemWriter, WriteResult, markers_literal
from wfcrawl.storage.units import SinkKind, Unit


class PostgresPipeline(BufferedSink[PgBatch]):
    kind = SinkKind(
        name="postgres", label="PostgreSQL", write="PostgreSQL write", enabled="WFCRAWL_POSTGRES_ENABLED",
        address="DATABASE_URL", held="rows", limit="WFCRAWL_POSTGRES_MAX_PENDING",
        spill_suffix=".jsonl", spilled_stat="items/spilled", spilled="rows",
    )

    def __init__(self, crawler: Crawler, config: PostgresConfig) -> None:
        super().__init__(crawler, config.retry, limit=config.max_pending, quarantine=config.quarantine,
                         lanes=config.writers)
        self.config = config
        self.writers: list[PostgresItemWriter] = []

    @classmethod
    def create(cls, crawler: Crawler) -> PostgresPipeline:
        return cls(crawler, PostgresConfig.from_settings(crawler.settings))

    @property
    def tick_interval(self) -> float:
        return self.config.flush_interval

    def opening(self) -> None:
        config, specs = self.config, self.context.item_specs
        self.tables = {t: s.table for t, s in specs.items() if s.table}
        self.keys = ItemKeys({t: s.key for t, s in specs.items() if s.key})
        self.writers = [
            PostgresItemWriter(config.dsn, config.schema, connect_timeout=config.connect_timeout,
                               statement_timeout=config.statement_timeout)
            for _ in range(config.writers)
        ]

    def start(self) -> None:
        self.writers[0].prepare(set(self.tables.values()), run_migrations=self.config.migrate)

    def unusable(self, exc: Exception) -> str:
        return f"cannot use PostgreSQL at {describe_dsn(self.config.dsn)} (DATABASE_URL): {first_line(exc)}"

    # ------------------------------------------------------------ rows

    def _row(self, item: Mapping[str, Any]) -> tuple[Any, ...]:
        meta = provenance(item)
        key = item.get(KEY) or self.keys.key(item)[0]
        fetched = meta.get("fetched_at") or datetime.now(timezone.utc).isoformat()
        return (
            self.context.workflow, type_of(item), str(key), self.context.execution_id or "none",
            str(meta.get("url") or ""), str(meta.get("phase") or ""), int(meta.get("depth") or 0),
            markers_literal(meta.get("markers")), str(fetched),
        )

    def _add(self, row: tuple[Any, ...], put: Callable[[PgBatch], None]) -> None:
        # Rows are routed to writers by key, so every write of one key goes through
        # the same thread in order (a later version never loses to an earlier one)
        # while writers keep the database busy in parallel.
        lane = hash((row[1], row[2])) % len(self.writers)
        unit = self._unit(lane, PgBatch, lane=lane)
        before = len(unit.payload)
        put(unit.payload)
        self._hold(unit, len(unit.payload) - before)
        if len(unit.payload) >= self.config.batch_size:
            self._seal(lane)

    def accept(self, item: Mapping[str, Any]) -> None:
        row = (*self._row(item), self._json(fields_of(item)))
        self._add(row, lambda batch: batch.add(self.tables.get(row[1], "items"), row))

    def quarantined(self, item: Mapping[str, Any], errors: list[dict[str, str]]) -> None:
        row = (*self._row(item), "invalid", self._json(errors), self._json(fields_of(item)))
        self._add(row, lambda batch: batch.add_quarantine(row))

    # ------------------------------------------------------------ batches

    def due(self, unit: Unit[PgBatch], now: float) -> bool:
        # While a write is in flight the batch keeps filling (fewer, larger
        # batches when the database is slow or away).
        return not self._busy(unit.lane)

    def job(self, unit: Unit[PgBatch]) -> Callable[[], WriteResult]:
        self.stats.inc_value(f"{self.prefix}/items/superseded", unit.payload.superseded)
        return partial(self.writers[unit.lane].write, unit.payload)

    def written(self, unit: Unit[PgBatch], result: WriteResult) -> None:
        self.stats.inc_value(f"{self.prefix}/batches")
        self.stats.inc_value(f"{self.prefix}/items/inserted", result.inserted)
        self.stats.inc_value(f"{self.prefix}/items/updated", result.updated)
        if result.quarantined:
            self.stats.inc_value(f"{self.prefix}/items/quarantined", result.quarantined)
        if result.refused:
            self.stats.inc_value(f"{self.prefix}/items/refused", result.refused)
        if result.outdated:
            self.stats.inc_value(f"{self.prefix}/items/outdated", result.outdated)

    def close_lane(self, lane: int) -> None:
        self.writers[lane].close()

    def interrupt(self) -> None:
        # A write PgBouncer holds (no server connection) would wait for its
        # query_wait_timeout; neither statement_timeout nor libpq's timeouts end it.
        for writer in self.writers:
            writer.interrupt()

    def spill(self, path: Path, units: list[Unit[PgBatch]]) -> int:
        """Append the batches' rows to a JSON-lines spill file (worker thread)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [line for unit in units for line in unit.payload.json_lines()]
        with path.open("a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        return len(lines)

    def spill_advice(self, path: Path) -> str:
        return f"once it is back: wfcrawl spill load {path}"
