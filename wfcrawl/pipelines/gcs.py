"""Items (and optionally raw pages) into Google Cloud Storage as gzip JSON lines.

Enabled by ``GCS_BUCKET`` (setting or environment variable); the layout is in
:mod:`wfcrawl.storage.gcs`. Each item type has one open object in memory; it is
closed at ``WFCRAWL_GCS_MAX_ITEMS`` items, ``WFCRAWL_GCS_MAX_BYTES`` bytes or
``WFCRAWL_GCS_MAX_AGE`` seconds, then uploaded whole by a worker thread.
Retries, back-pressure (``WFCRAWL_GCS_MAX_PENDING_BYTES``), durability reports
(durable = its object uploaded) and the close (objects written under
``WFCRAWL_STORAGE_SPILL_DIR`` after ``WFCRAWL_STORAGE_CLOSE_TIMEOUT``) are the
:class:`~wfcrawl.pipelines.buffered.BufferedSink`'s.

Each line is the whole item: fields plus ``_type``, ``_key`` and ``_meta``, so
consumers can deduplicate by ``(_meta.workflow, _type, _key)`` across re-crawls.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.http import Response, TextResponse

from wfcrawl import meta as wfmeta
from wfcrawl.items import KEY, META, TYPE, ItemKeys, fields_of, record_of, type_of
from wfcrawl.pipelines.buffered import BufferedSink
from wfcrawl.storage.config import GcsConfig
from wfcrawl.storage.gcs import GcsObjectWriter, compress, execution_folder, part_name, segment
from wfcrawl.storage.units import SinkKind, Unit


class GcsPipeline(BufferedSink[list[bytes]]):
    kind = SinkKind(
        name="gcs", label="GCS", write="GCS upload", enabled="WFCRAWL_GCS_ENABLED", address="GCS_BUCKET",
        held="bytes", limit="WFCRAWL_GCS_MAX_PENDING_BYTES", spill_suffix="", spilled_stat="objects/spilled",
        spilled="objects",
    )

    def __init__(self, crawler: Crawler, config: GcsConfig) -> None:
        super().__init__(crawler, config.retry, limit=config.max_pending_bytes, quarantine=config.quarantine)
        self.config = config
        self.writer = GcsObjectWriter(config.bucket, endpoint=config.endpoint, token=config.token, project=config.project)
        self.seq: dict[str, int] = {}

    @classmethod
    def create(cls, crawler: Crawler) -> GcsPipeline:
        return cls(crawler, GcsConfig.from_settings(crawler.settings))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> GcsPipeline:
        pipeline = super().from_crawler(crawler)
        if pipeline.config.archive_pages:
            crawler.signals.connect(pipeline.response_received, signal=signals.response_received)
        return pipeline

    @property
    def tick_interval(self) -> float:
        return min(1.0, self.config.max_age)

    def opening(self) -> None:
        context = self.context
        self.folder = execution_folder(self.config.prefix, context.workflow, context.execution_id or "none")
        self.keys = ItemKeys({t: s.key for t, s in context.item_specs.items() if s.key})

    def start(self) -> None:
        marker = {
            "instance": self.config.instance, "host": socket.gethostname(), "pid": os.getpid(),
            "workflow": self.context.workflow, "execution_id": self.context.execution_id,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.writer.open(f"{self.folder}/_instances/{self.config.instance}.json", marker)

    def unusable(self, exc: Exception) -> str:
        return f"cannot use GCS bucket gs://{self.config.bucket} (GCS_BUCKET): {exc}"

    # ------------------------------------------------------------ input

    def _append(self, folder: str, record: Any, *, item: bool = True) -> None:
        unit = self._unit(folder, list, item=item)
        line = self._json(record).encode("utf-8") + b"\n"
        unit.payload.append(line)
        self._hold(unit, len(line))
        if len(unit.payload) >= self.config.max_items or unit.size >= self.config.max_bytes:
            self._seal(folder)

    def accept(self, item: Mapping[str, Any]) -> None:
        record = item if isinstance(item, dict) else record_of(item)
        if not record.get(KEY):  # without the validation pipeline (disabled) the key is computed here
            record = {**record, KEY: self.keys.key(item)[0]}
        self._append(segment(type_of(item)), record)

    def quarantined(self, item: Mapping[str, Any], errors: list[dict[str, str]]) -> None:
        # The item the signal names is the one the spider yielded: a pipeline that
        # replaced it (by another type) left it without the key validation set.
        record = {TYPE: item.get(TYPE), KEY: item.get(KEY) or self.keys.key(item)[0], META: item.get(META),
                  "errors": errors, "item": fields_of(item)}
        self._append(f"_quarantine/{segment(type_of(item))}", record)
        self.stats.inc_value(f"{self.prefix}/items/quarantined")

    def response_received(self, response: Response, request: Request, spider: Spider) -> None:
        meta = request.meta
        if wfmeta.PHASE not in meta or not self.lanes:
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
        self._append("_pages", record, item=False)
        self.stats.inc_value(f"{self.prefix}/pages/archived")

    # ------------------------------------------------------------ objects

    def due(self, unit: Unit[list[bytes]], now: float) -> bool:
        return now - unit.opened >= self.config.max_age

    def job(self, unit: Unit[list[bytes]]) -> Callable[[], int]:
        folder = str(unit.key)
        seq = self.seq.get(folder, 0)
        self.seq[folder] = seq + 1
        unit.name = f"{self.folder}/{folder}/{part_name(self.config.instance, seq)}"
        metadata = {"wfcrawl-lines": str(len(unit.payload)), "wfcrawl-instance": self.config.instance}
        return partial(self.writer.put, unit.name, unit.payload, metadata)

    def written(self, unit: Unit[list[bytes]], result: int) -> None:
        self.stats.inc_value(f"{self.prefix}/objects")
        self.stats.inc_value(f"{self.prefix}/bytes", result)
        if not str(unit.key).startswith("_"):
            self.stats.inc_value(f"{self.prefix}/items/written", len(unit.payload))

    def spill(self, path: Path, units: list[Unit[list[bytes]]]) -> int:
        for unit in units:
            target = path / unit.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(compress(unit.payload))
        return len(units)

    def spill_advice(self, path: Path) -> str:
        return f"same layout: upload them with `gcloud storage cp -r {path}/* gs://{self.config.bucket}/`"
