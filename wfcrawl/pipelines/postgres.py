"""Items into PostgreSQL: batched, idempotent, off the reactor, nothing lost.

Enabled by ``DATABASE_URL`` (setting or environment variable). At start the
database is reached and migrated, or the crawl fails with a clear message.
Items are buffered into batches (flushed at ``WFCRAWL_POSTGRES_BATCH_SIZE``
rows or every ``WFCRAWL_POSTGRES_FLUSH_INTERVAL`` seconds) written by one
worker thread (:class:`wfcrawl.storage.pgitems.PostgresItemWriter`) as upserts
keyed by ``(workflow, item_type, _key)``. A failed batch is retried with
backoff until it is written; while more than ``WFCRAWL_POSTGRES_MAX_PENDING``
rows wait, ``process_item`` waits too (back-pressure on the crawl). The crawl
closes only after the last batch is committed, or, after
``WFCRAWL_STORAGE_CLOSE_TIMEOUT``, after the unwritten rows went to a spill file.

Every row is reported to the crawl's :class:`~wfcrawl.durability.DurabilityTracker`
when it is buffered and again when its batch is committed, so the distributed
scheduler releases a request's lease only once its rows are in the database.

Items dropped as invalid (:class:`wfcrawl.pipelines.validation.InvalidItem`)
go to the ``quarantine`` table with their validation errors.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from wfcrawl.durability import DurabilityTracker
from wfcrawl.exceptions import ConfigurationError, WfcrawlError
from wfcrawl.pipelines.background import AbortedError, Pressure, SerialWorker
from wfcrawl.pipelines.items import KEY, TYPE, ItemKeys, fields_of, provenance
from wfcrawl.pipelines.storage import CrawlContext, RetryConfig, positive, spill_path
from wfcrawl.pipelines.validation import InvalidItem
from wfcrawl.storage.connection import describe_dsn, first_line, parse_dsn
from wfcrawl.storage.pgitems import PgBatch, PostgresItemWriter, WriteResult, markers_literal
from wfcrawl.storage.serialize import dumps

logger = logging.getLogger(__name__)
PREFIX = "wfcrawl/postgres"


@dataclass(frozen=True)
class PostgresConfig:
    dsn: str
    schema: str
    migrate: bool
    batch_size: int
    flush_interval: float
    max_pending: int
    connect_timeout: float
    statement_timeout: float
    quarantine: bool
    writers: int
    retry: RetryConfig

    @classmethod
    def read(cls, settings: Any) -> PostgresConfig:
        config = cls(
            dsn=settings.get("DATABASE_URL"),
            schema=settings.get("WFCRAWL_POSTGRES_SCHEMA"),
            migrate=settings.getbool("WFCRAWL_POSTGRES_MIGRATE"),
            batch_size=settings.getint("WFCRAWL_POSTGRES_BATCH_SIZE"),
            flush_interval=settings.getfloat("WFCRAWL_POSTGRES_FLUSH_INTERVAL"),
            max_pending=settings.getint("WFCRAWL_POSTGRES_MAX_PENDING"),
            connect_timeout=settings.getfloat("WFCRAWL_POSTGRES_CONNECT_TIMEOUT"),
            statement_timeout=settings.getfloat("WFCRAWL_POSTGRES_STATEMENT_TIMEOUT"),
            quarantine=settings.getbool("WFCRAWL_POSTGRES_QUARANTINE"),
            writers=settings.getint("WFCRAWL_POSTGRES_WRITERS"),
            retry=RetryConfig.read(settings),
        )
        parse_dsn(config.dsn)
        if not config.schema:
            raise ConfigurationError("WFCRAWL_POSTGRES_SCHEMA must not be empty")
        for name in ("batch_size", "flush_interval", "max_pending", "connect_timeout", "writers"):
            positive(getattr(config, name), f"WFCRAWL_POSTGRES_{name.upper()}")
        if config.max_pending < config.batch_size:
            raise ConfigurationError(
                f"WFCRAWL_POSTGRES_MAX_PENDING ({config.max_pending}) must be at least "
                f"WFCRAWL_POSTGRES_BATCH_SIZE ({config.batch_size})"
            )
        return config


@dataclass
class _Writer:
    """One writer thread with its own connection and its own batch.

    Rows are routed to writers by key, so every write of one key goes through
    the same thread in order (a later version never loses to an earlier one)
    while writers keep the database busy in parallel.
    """

    writer: PostgresItemWriter
    worker: SerialWorker
    batch: PgBatch = field(default_factory=PgBatch)
    #: Durability number of the first row of ``batch`` (None: empty).
    first: int | None = None
    #: First numbers of the batches submitted and not done, oldest first (the
    #: worker writes them in this order).
    inflight: deque[int | None] = field(default_factory=deque)


class PostgresPipeline:
    def __init__(self, crawler: Crawler, config: PostgresConfig) -> None:
        self.crawler = crawler
        self.config = config
        assert crawler.stats is not None
        self.stats = crawler.stats
        self.pressure = Pressure(config.max_pending)
        self.unwritten: list[PgBatch] = []
        self.context: CrawlContext
        self.writers: list[_Writer] = []
        self.flusher = LoopingCall(self._tick)
        self._waiting = False
        self.durability = DurabilityTracker.of(crawler).register("postgres", self.flush)
        self._given_up: list[int | None] = []  # first numbers of batches spilled, never durable

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PostgresPipeline:
        settings = crawler.settings
        if not settings.getbool("WFCRAWL_POSTGRES_ENABLED") or not settings.get("DATABASE_URL"):
            raise NotConfigured
        pipeline = cls(crawler, PostgresConfig.read(settings))
        crawler.signals.connect(pipeline.item_dropped, signal=signals.item_dropped)
        return pipeline

    async def open_spider(self) -> None:
        config = self.config
        self.context = CrawlContext.of(self.crawler)
        specs = self.context.item_specs
        self.tables = {t: s.table for t, s in specs.items() if s.table}
        self.keys = ItemKeys({t: s.key for t, s in specs.items() if s.key})
        writers = [
            _Writer(
                PostgresItemWriter(config.dsn, config.schema, connect_timeout=config.connect_timeout,
                                   statement_timeout=config.statement_timeout),
                SerialWorker(f"wfcrawl-postgres-{i}", retry_delay=config.retry.retry_delay,
                             retry_max_delay=config.retry.retry_max_delay, on_retry=self._retrying),
            )
            for i in range(config.writers)
        ]
        first = writers[0]
        try:
            await maybe_deferred_to_future(
                first.worker.call(first.writer.prepare, set(self.tables.values()), run_migrations=config.migrate)
            )
        except Exception as exc:
            for w in writers:
                w.worker.stop()
            if isinstance(exc, WfcrawlError):
                raise
            raise ConfigurationError(
                f"cannot use PostgreSQL at {describe_dsn(config.dsn)} (DATABASE_URL): {first_line(exc)}"
            ) from None
        self.writers = writers
        self.flusher.start(config.flush_interval, now=False)

    # ------------------------------------------------------------ items

    async def process_item(self, item: Any) -> Any:
        if isinstance(item, dict):
            self._add(item)
            if self.pressure.full:
                self.stats.inc_value(f"{PREFIX}/backpressure")
                if not self._waiting:
                    self._waiting = True  # once per episode, until the next batch is written
                    logger.info(
                        "PostgreSQL writes are behind: %d rows held (WFCRAWL_POSTGRES_MAX_PENDING); "
                        "the crawl waits", self.pressure.held, extra={"spider": self.crawler.spider},
                    )
                for w in self.writers:  # partial batches too: they are what holds the room
                    self._flush(w)
                await maybe_deferred_to_future(self.pressure.wait())
        return item

    def _row(self, item: dict[str, Any]) -> tuple[Any, ...]:
        meta = provenance(item)
        key = item.get(KEY) or self.keys.key(item)[0]
        fetched = meta.get("fetched_at") or datetime.now(timezone.utc).isoformat()
        return (
            self.context.workflow, str(item.get(TYPE, "")), str(key), self.context.execution_id,
            str(meta.get("url") or ""), str(meta.get("phase") or ""), int(meta.get("depth") or 0),
            markers_literal(meta.get("markers")), str(fetched),
        )

    def _json(self, value: Any) -> str:
        text, sanitized = dumps(value)
        if sanitized:
            self.stats.inc_value(f"{PREFIX}/items/sanitized")
        return text

    def _writer_for(self, row: tuple[Any, ...]) -> _Writer:
        return self.writers[hash((row[1], row[2])) % len(self.writers)]

    def _add(self, item: dict[str, Any]) -> None:
        row = (*self._row(item), self._json(fields_of(item)))
        w = self._writer_for(row)
        self._accept(w)
        before = len(w.batch)
        w.batch.add(self.tables.get(row[1], "items"), row)
        self.pressure.add(len(w.batch) - before)
        if len(w.batch) >= self.config.batch_size:
            self._flush(w)

    def item_dropped(self, item: Any, response: Any, exception: BaseException, spider: Spider) -> None:
        if not (self.config.quarantine and isinstance(exception, InvalidItem) and isinstance(item, dict)):
            return
        if not self.writers:
            return  # not opened (failed start)
        row = (*self._row(item), "invalid", self._json(exception.errors), self._json(fields_of(item)))
        w = self._writer_for(row)
        self._accept(w)
        before = len(w.batch)
        w.batch.add_quarantine(row)
        self.pressure.add(len(w.batch) - before)

    def _accept(self, w: _Writer) -> None:
        seq = self.durability.accept()
        if w.first is None:
            w.first = seq

    # ------------------------------------------------------------ batches

    def flush(self) -> None:
        """Start writing every buffered row now (the durability barrier asks when leases wait)."""
        for w in self.writers:
            self._flush(w)

    def _settle(self) -> None:
        pending: list[int | None] = [*self._given_up]
        for w in self.writers:
            pending.append(w.first)
            if w.inflight:
                pending.append(w.inflight[0])  # a writer's batches complete in order
        self.durability.settle(pending)

    def _tick(self) -> None:
        # Time-based flush; while a write is in flight the buffer keeps filling
        # (fewer, larger batches when the database is slow or away).
        for w in self.writers:
            if len(w.batch) and not w.worker.busy:
                self._flush(w)

    def _flush(self, w: _Writer) -> None:
        if not len(w.batch):
            return
        batch, w.batch = w.batch, PgBatch()
        w.inflight.append(w.first)
        w.first = None
        self.stats.inc_value(f"{PREFIX}/items/superseded", batch.superseded)
        d = w.worker.submit(w.writer.write, batch)
        d.addCallbacks(self._written, self._failed, callbackArgs=(batch, w), errbackArgs=(batch, w))

    def _written(self, result: WriteResult, batch: PgBatch, w: _Writer) -> None:
        w.inflight.popleft()
        self._settle()
        self.stats.inc_value(f"{PREFIX}/batches")
        self.stats.inc_value(f"{PREFIX}/items/inserted", result.inserted)
        self.stats.inc_value(f"{PREFIX}/items/updated", result.updated)
        if result.quarantined:
            self.stats.inc_value(f"{PREFIX}/items/quarantined", result.quarantined)
        if result.refused:
            self.stats.inc_value(f"{PREFIX}/items/refused", result.refused)
        self._waiting = False
        self.pressure.release(len(batch))

    def _failed(self, failure: Failure, batch: PgBatch, w: _Writer) -> None:
        # Spilled at close, not committed: the leases of its requests go back to the queue.
        self._given_up.append(w.inflight.popleft())
        if not isinstance(failure.value, AbortedError):
            logger.error("PostgreSQL batch failed unexpectedly", exc_info=failure.value)
        self.unwritten.append(batch)
        self.pressure.release(len(batch))

    def _retrying(self, exc: BaseException, delay: float) -> None:
        self.stats.inc_value(f"{PREFIX}/retries")
        self.stats.inc_value(f"{PREFIX}/errors/{type(exc).__name__}")
        logger.warning(
            "PostgreSQL write failed (%s: %s); retrying in %.1fs, %d rows held in memory",
            type(exc).__name__, first_line(exc), delay, self.pressure.held,
            extra={"spider": self.crawler.spider},
        )

    async def close_spider(self) -> None:
        if not self.writers:
            return
        if self.flusher.running:
            self.flusher.stop()
        for w in self.writers:
            self._flush(w)
        deadline = time.monotonic() + self.config.retry.close_timeout
        for w in self.writers:
            # One deadline for all: they drain in parallel.
            await w.worker.drain(deadline - time.monotonic())
        first = self.writers[0].worker
        if self.unwritten:
            path = spill_path(self.config.retry.spill_dir, "postgres", self.context, ".jsonl")
            count = await maybe_deferred_to_future(first.call(_spill, path, self.unwritten))
            self.stats.inc_value(f"{PREFIX}/items/spilled", count)
            logger.error(
                "PostgreSQL stayed unavailable for WFCRAWL_STORAGE_CLOSE_TIMEOUT=%ss: %d rows written to %s instead "
                "(once it is back: wfcrawl spill load %s)",
                self.config.retry.close_timeout, count, path, path, extra={"spider": self.crawler.spider},
            )
        self.pressure.release_all()
        for w in self.writers:
            await maybe_deferred_to_future(w.worker.call(w.writer.close))
            w.worker.stop()
        self.writers = []


def _spill(path: Path, batches: list[PgBatch]) -> int:
    """Append the batches' rows to a JSON-lines spill file (worker thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [line for batch in batches for line in batch.json_lines()]
    with path.open("a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    return len(lines)
