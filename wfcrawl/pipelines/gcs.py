"""Items (and optionally raw pages) into Google Cloud Storage as gzip JSON lines.

Enabled by ``GCS_BUCKET`` (setting or environment variable); the layout is in
:mod:`wfcrawl.storage.gcs`. Each item type has one open object in memory; it is
closed at ``WFCRAWL_GCS_MAX_ITEMS`` items, ``WFCRAWL_GCS_MAX_BYTES`` bytes or
``WFCRAWL_GCS_MAX_AGE`` seconds, then uploaded whole by a worker thread. Failed
uploads are retried with backoff until they succeed; while more than
``WFCRAWL_GCS_MAX_PENDING_BYTES`` wait, ``process_item`` waits. At close every
object is uploaded before the crawl ends (or, after
``WFCRAWL_STORAGE_CLOSE_TIMEOUT``, written under ``WFCRAWL_STORAGE_SPILL_DIR``).

Each line is the whole item: fields plus ``_type``, ``_key`` and ``_meta``, so
consumers can deduplicate by ``(_meta.workflow, _type, _key)`` across re-crawls.

Item and quarantine lines are reported to the crawl's
:class:`~wfcrawl.durability.DurabilityTracker` (durable = its object uploaded), so
the distributed scheduler releases a request's lease only once its items are in
the bucket; when releases wait too long it asks for the open objects (:meth:`GcsPipeline.flush`).
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response, TextResponse
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from wfcrawl.durability import DurabilityTracker
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.pipelines.background import AbortedError, Pressure, SerialWorker
from wfcrawl.pipelines.items import KEY, META, TYPE, ItemKeys, fields_of
from wfcrawl.pipelines.storage import CrawlContext, RetryConfig, positive, spill_path
from wfcrawl.pipelines.validation import InvalidItem
from wfcrawl.spiders import meta as wfmeta
from wfcrawl.storage.connection import first_line
from wfcrawl.storage.gcs import BUCKET_NAME, GcsObjectWriter, compress, execution_folder, part_name, segment
from wfcrawl.storage.serialize import dumps

logger = logging.getLogger(__name__)
PREFIX = "wfcrawl/gcs"


@dataclass(frozen=True)
class GcsConfig:
    bucket: str
    prefix: str
    instance: str
    endpoint: str
    token: str
    project: str
    max_items: int
    max_bytes: int
    max_age: float
    max_pending_bytes: int
    quarantine: bool
    archive_pages: bool
    retry: RetryConfig

    @classmethod
    def read(cls, settings: Any) -> GcsConfig:
        bucket = str(settings.get("GCS_BUCKET")).removeprefix("gs://").strip("/")
        if not BUCKET_NAME.match(bucket):
            raise ConfigurationError(f"GCS_BUCKET {bucket!r} is not a valid bucket name")
        instance = settings.get("WFCRAWL_GCS_INSTANCE") or f"{socket.gethostname()}-{secrets.token_hex(3)}"
        config = cls(
            bucket=bucket,
            prefix=settings.get("WFCRAWL_GCS_PREFIX") or "",
            instance=segment(instance).replace(".", "_"),
            endpoint=settings.get("WFCRAWL_GCS_ENDPOINT") or "",
            token=settings.get("WFCRAWL_GCS_TOKEN") or "",
            project=settings.get("WFCRAWL_GCS_PROJECT") or "",
            max_items=settings.getint("WFCRAWL_GCS_MAX_ITEMS"),
            max_bytes=settings.getint("WFCRAWL_GCS_MAX_BYTES"),
            max_age=settings.getfloat("WFCRAWL_GCS_MAX_AGE"),
            max_pending_bytes=settings.getint("WFCRAWL_GCS_MAX_PENDING_BYTES"),
            quarantine=settings.getbool("WFCRAWL_GCS_QUARANTINE"),
            archive_pages=settings.getbool("WFCRAWL_GCS_ARCHIVE_PAGES"),
            retry=RetryConfig.read(settings),
        )
        for name in ("max_items", "max_bytes", "max_age", "max_pending_bytes"):
            positive(getattr(config, name), f"WFCRAWL_GCS_{name.upper()}")
        return config


@dataclass(eq=False)
class Part:
    """The open object of one folder."""

    folder: str
    opened: float = field(default_factory=time.monotonic)
    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    #: Durability number of its first item or quarantine line (None: pages only).
    first: int | None = None


class GcsPipeline:
    def __init__(self, crawler: Crawler, config: GcsConfig) -> None:
        self.crawler = crawler
        self.config = config
        assert crawler.stats is not None
        self.stats = crawler.stats
        self.parts: dict[str, Part] = {}
        self.seq: dict[str, int] = {}
        self.pressure = Pressure(config.max_pending_bytes)
        self.unwritten: list[tuple[str, list[bytes]]] = []
        self.worker: SerialWorker | None = None
        self.rotator = LoopingCall(self._tick)
        self.writer = GcsObjectWriter(config.bucket, endpoint=config.endpoint, token=config.token, project=config.project)
        self.durability = DurabilityTracker.of(crawler).register("gcs", self.flush)
        self.uploading: list[Part] = []  # sealed, not uploaded yet
        self._given_up: list[int | None] = []  # first numbers of objects spilled, never durable

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> GcsPipeline:
        settings = crawler.settings
        if not settings.getbool("WFCRAWL_GCS_ENABLED") or not settings.get("GCS_BUCKET"):
            raise NotConfigured
        pipeline = cls(crawler, GcsConfig.read(settings))
        crawler.signals.connect(pipeline.item_dropped, signal=signals.item_dropped)
        if pipeline.config.archive_pages:
            crawler.signals.connect(pipeline.response_received, signal=signals.response_received)
        return pipeline

    async def open_spider(self) -> None:
        config = self.config
        self.context = CrawlContext.of(self.crawler)
        self.folder = execution_folder(config.prefix, self.context.workflow, self.context.execution_id)
        self.keys = ItemKeys({t: s.key for t, s in self.context.item_specs.items() if s.key})
        self.worker = SerialWorker(
            "wfcrawl-gcs", retry_delay=config.retry.retry_delay,
            retry_max_delay=config.retry.retry_max_delay, on_retry=self._retrying,
        )
        marker = {
            "instance": config.instance, "host": socket.gethostname(), "pid": os.getpid(),
            "workflow": self.context.workflow, "execution_id": self.context.execution_id,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            await maybe_deferred_to_future(
                self.worker.call(self.writer.open, f"{self.folder}/_instances/{config.instance}.json", marker)
            )
        except Exception:
            self.worker.stop()
            self.worker = None
            raise
        self.rotator.start(min(1.0, config.max_age), now=False)

    # ------------------------------------------------------------ input

    def _line(self, record: Any) -> bytes:
        text, sanitized = dumps(record)
        if sanitized:
            self.stats.inc_value(f"{PREFIX}/items/sanitized")
        return text.encode("utf-8") + b"\n"

    async def process_item(self, item: Any) -> Any:
        if isinstance(item, dict):
            # Without the validation pipeline (disabled) the key is computed here.
            record = item if item.get(KEY) else {**item, KEY: self.keys.key(item)[0]}
            self._append(segment(str(item.get(TYPE, ""))), self._line(record), item=True)
            if self.pressure.full:
                self.stats.inc_value(f"{PREFIX}/backpressure")
                # Open objects are what we hold; uploading them now is how room is made.
                for folder in list(self.parts):
                    self._seal(folder)
                await maybe_deferred_to_future(self.pressure.wait())
        return item

    def item_dropped(self, item: Any, response: Any, exception: BaseException, spider: Spider) -> None:
        if not (self.config.quarantine and isinstance(exception, InvalidItem) and isinstance(item, dict)):
            return
        if self.worker is None:
            return
        record = {TYPE: item.get(TYPE), KEY: item.get(KEY), META: item.get(META),
                  "errors": exception.errors, "item": fields_of(item)}
        self._append(f"_quarantine/{segment(str(item.get(TYPE, '')))}", self._line(record), item=True)
        self.stats.inc_value(f"{PREFIX}/items/quarantined")

    def response_received(self, response: Response, request: Request, spider: Spider) -> None:
        meta = request.meta
        if wfmeta.PHASE not in meta or self.worker is None:
            return  # only pages of the workflow (not robots.txt)
        record: dict[str, Any] = {
            "url": response.url, "status": response.status,
            "headers": {k.decode("latin-1"): [v.decode("latin-1") for v in vs] for k, vs in response.headers.items()},
            "phase": meta[wfmeta.PHASE], "marker": meta.get(wfmeta.MARKER), "markers": meta.get(wfmeta.MARKERS),
            "depth": meta.get(wfmeta.DEPTH), "page": meta.get(wfmeta.PAGE),
            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        if isinstance(response, TextResponse):
            record["encoding"] = response.encoding
            record["text"] = response.text
        else:
            record["body_base64"] = base64.b64encode(response.body).decode("ascii")
        self._append("_pages", self._line(record))
        self.stats.inc_value(f"{PREFIX}/pages/archived")

    # ------------------------------------------------------------ objects

    def _append(self, folder: str, line: bytes, *, item: bool = False) -> None:
        part = self.parts.get(folder)
        if part is None:
            part = self.parts[folder] = Part(folder)
        if item:
            seq = self.durability.accept()
            if part.first is None:
                part.first = seq
        part.lines.append(line)
        part.size += len(line)
        self.pressure.add(len(line))
        if len(part.lines) >= self.config.max_items or part.size >= self.config.max_bytes:
            self._seal(folder)

    def _tick(self) -> None:
        now = time.monotonic()
        for folder in [f for f, p in self.parts.items() if now - p.opened >= self.config.max_age]:
            self._seal(folder)

    def flush(self) -> None:
        """Upload every open object holding items now (the durability barrier asks when leases wait)."""
        if self.worker is None:
            return
        for folder in [f for f, p in self.parts.items() if p.first is not None]:
            self._seal(folder)

    def _settle(self) -> None:
        firsts = (p.first for p in (*self.parts.values(), *self.uploading))
        self.durability.settle([*self._given_up, *firsts])

    def _seal(self, folder: str) -> None:
        part = self.parts.pop(folder)
        assert self.worker is not None
        self.uploading.append(part)
        seq = self.seq.get(folder, 0)
        self.seq[folder] = seq + 1
        path = f"{self.folder}/{folder}/{part_name(self.config.instance, seq)}"
        metadata = {"wfcrawl-lines": str(len(part.lines)), "wfcrawl-instance": self.config.instance}
        d = self.worker.submit(self.writer.put, path, part.lines, metadata)
        d.addCallbacks(self._uploaded, self._failed, callbackArgs=(part,), errbackArgs=(path, part))

    def _uploaded(self, compressed: int, part: Part) -> None:
        self.uploading.remove(part)
        self._settle()
        self.stats.inc_value(f"{PREFIX}/objects")
        self.stats.inc_value(f"{PREFIX}/bytes", compressed)
        if not part.folder.startswith("_"):
            self.stats.inc_value(f"{PREFIX}/items/written", len(part.lines))
        self.pressure.release(part.size)

    def _failed(self, failure: Failure, path: str, part: Part) -> None:
        # Spilled at close, not uploaded: the leases of its requests go back to the queue.
        self.uploading.remove(part)
        self._given_up.append(part.first)
        if not isinstance(failure.value, AbortedError):
            logger.error("GCS upload of %s failed unexpectedly", path, exc_info=failure.value)
        self.unwritten.append((path, part.lines))
        self.pressure.release(part.size)

    def _retrying(self, exc: BaseException, delay: float) -> None:
        self.stats.inc_value(f"{PREFIX}/retries")
        self.stats.inc_value(f"{PREFIX}/errors/{type(exc).__name__}")
        logger.warning(
            "GCS upload failed (%s: %s); retrying in %.1fs, %d bytes held in memory",
            type(exc).__name__, first_line(exc), delay, self.pressure.held, extra={"spider": self.crawler.spider},
        )

    async def close_spider(self) -> None:
        if self.worker is None:
            return
        if self.rotator.running:
            self.rotator.stop()
        for folder in list(self.parts):
            self._seal(folder)
        await self.worker.drain(self.config.retry.close_timeout)
        if self.unwritten:
            root = spill_path(self.config.retry.spill_dir, "gcs", self.context, "")
            count = await maybe_deferred_to_future(self.worker.call(_spill, root, self.unwritten))
            self.stats.inc_value(f"{PREFIX}/objects/spilled", count)
            logger.error(
                "GCS stayed unavailable for WFCRAWL_STORAGE_CLOSE_TIMEOUT=%ss: %d objects written under %s "
                "instead (same layout: upload them with `gcloud storage cp -r %s/* gs://%s/`)",
                self.config.retry.close_timeout, count, root, root, self.config.bucket,
                extra={"spider": self.crawler.spider},
            )
        self.pressure.release_all()
        self.worker.stop()
        self.worker = None  # closed: a late flush() finds nothing to do


def _spill(root: Path, objects: list[tuple[str, list[bytes]]]) -> int:
    for path, lines in objects:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(compress(lines))
    return len(objects)
