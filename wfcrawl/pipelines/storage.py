"""What the storage pipelines share: retry/close settings, workflow context, spill files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrapy.crawler import Crawler

from wfcrawl.exceptions import ConfigurationError


@dataclass(frozen=True)
class RetryConfig:
    """``WFCRAWL_STORAGE_*``: how failed writes are retried and what happens at close."""

    retry_delay: float
    retry_max_delay: float
    close_timeout: float
    spill_dir: str

    @classmethod
    def read(cls, settings: Any) -> RetryConfig:
        config = cls(
            retry_delay=settings.getfloat("WFCRAWL_STORAGE_RETRY_DELAY"),
            retry_max_delay=settings.getfloat("WFCRAWL_STORAGE_RETRY_MAX_DELAY"),
            close_timeout=settings.getfloat("WFCRAWL_STORAGE_CLOSE_TIMEOUT"),
            spill_dir=settings.get("WFCRAWL_STORAGE_SPILL_DIR"),
        )
        positive(config.retry_delay, "WFCRAWL_STORAGE_RETRY_DELAY")
        positive(config.retry_max_delay, "WFCRAWL_STORAGE_RETRY_MAX_DELAY")
        positive(config.close_timeout, "WFCRAWL_STORAGE_CLOSE_TIMEOUT")
        return config


def positive(value: float, name: str) -> None:
    if not value > 0:
        raise ConfigurationError(f"{name} must be greater than 0, not {value!r}")


@dataclass(frozen=True)
class CrawlContext:
    """The workflow and execution the items of this crawl belong to."""

    workflow: str
    execution_id: str
    plan: Any

    @classmethod
    def of(cls, crawler: Crawler) -> CrawlContext:
        spider = crawler.spider
        plan = getattr(spider, "plan", None)
        workflow = plan.name if plan is not None else getattr(spider, "name", "spider")
        return cls(workflow, str(getattr(spider, "execution_id", "") or "none"), plan)

    @property
    def item_specs(self) -> dict[str, Any]:
        return dict(getattr(self.plan, "items", None) or {})


def spill_path(spill_dir: str, kind: str, context: CrawlContext, suffix: str) -> Path:
    """Where unwritten data of this process goes: one file (or folder) per store and process."""
    return Path(spill_dir) / f"{kind}-{context.workflow}-{context.execution_id}-{os.getpid()}{suffix}"
