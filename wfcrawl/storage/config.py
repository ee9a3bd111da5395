"""The settings of the stores, read once into frozen objects (from the settings table).

``WFCRAWL_STORAGE_*`` (:class:`RetryConfig`) are shared by the stores;
:class:`PostgresConfig` and :class:`GcsConfig` are each store's. The storage
pipelines (:mod:`wfcrawl.pipelines.postgres`, :mod:`wfcrawl.pipelines.gcs`) and
``wfcrawl spill load`` (:mod:`wfcrawl.storage.postgres.spill`) read them here.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from typing import Any

from scrapy.settings import BaseSettings

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.settings.table import Config, setting
from wfcrawl.storage.gcs import BUCKET_NAME, segment
from wfcrawl.storage.postgres.connection import parse_dsn


@dataclass(frozen=True)
class RetryConfig(Config):
    """``WFCRAWL_STORAGE_*``: how failed writes are retried and what happens at close."""

    retry_delay: float = setting("WFCRAWL_STORAGE_RETRY_DELAY")
    retry_max_delay: float = setting("WFCRAWL_STORAGE_RETRY_MAX_DELAY")
    close_timeout: float = setting("WFCRAWL_STORAGE_CLOSE_TIMEOUT")
    spill_dir: str = setting("WFCRAWL_STORAGE_SPILL_DIR")


@dataclass(frozen=True)
class PostgresConfig(Config):
    retry: RetryConfig
    dsn: str = setting("DATABASE_URL")
    schema: str = setting("WFCRAWL_POSTGRES_SCHEMA")
    migrate: bool = setting("WFCRAWL_POSTGRES_MIGRATE")
    batch_size: int = setting("WFCRAWL_POSTGRES_BATCH_SIZE")
    flush_interval: float = setting("WFCRAWL_POSTGRES_FLUSH_INTERVAL")
    max_pending: int = setting("WFCRAWL_POSTGRES_MAX_PENDING")
    connect_timeout: float = setting("WFCRAWL_POSTGRES_CONNECT_TIMEOUT")
    statement_timeout: float = setting("WFCRAWL_POSTGRES_STATEMENT_TIMEOUT")
    quarantine: bool = setting("WFCRAWL_POSTGRES_QUARANTINE")
    writers: int = setting("WFCRAWL_POSTGRES_WRITERS")

    @classmethod
    def from_settings(cls, settings: BaseSettings, **values: Any) -> PostgresConfig:
        values.setdefault("retry", RetryConfig.from_settings(settings))
        return super().from_settings(settings, **values)

    def __post_init__(self) -> None:
        parse_dsn(self.dsn)
        if self.max_pending < self.batch_size:
            raise ConfigurationError(
                f"WFCRAWL_POSTGRES_MAX_PENDING ({self.max_pending}) must be at least "
                f"WFCRAWL_POSTGRES_BATCH_SIZE ({self.batch_size})"
            )


def _bucket(value: str) -> str:
    bucket = value.removeprefix("gs://").strip("/")
    if not BUCKET_NAME.match(bucket):
        raise ConfigurationError(f"GCS_BUCKET {bucket!r} is not a valid bucket name")
    return bucket


def _instance(value: str) -> str:
    return segment(value or f"{socket.gethostname()}-{secrets.token_hex(3)}").replace(".", "_")


@dataclass(frozen=True)
class GcsConfig(Config):
    retry: RetryConfig
    bucket: str = setting("GCS_BUCKET", _bucket)
    prefix: str = setting("WFCRAWL_GCS_PREFIX")
    instance: str = setting("WFCRAWL_GCS_INSTANCE", _instance)
    endpoint: str = setting("WFCRAWL_GCS_ENDPOINT")
    token: str = setting("WFCRAWL_GCS_TOKEN")
    project: str = setting("WFCRAWL_GCS_PROJECT")
    max_items: int = setting("WFCRAWL_GCS_MAX_ITEMS")
    max_bytes: int = setting("WFCRAWL_GCS_MAX_BYTES")
    max_age: float = setting("WFCRAWL_GCS_MAX_AGE")
    max_pending_bytes: int = setting("WFCRAWL_GCS_MAX_PENDING_BYTES")
    quarantine: bool = setting("WFCRAWL_GCS_QUARANTINE")
    archive_pages: bool = setting("WFCRAWL_GCS_ARCHIVE_PAGES")

    @classmethod
    def from_settings(cls, settings: BaseSettings, **values: Any) -> GcsConfig:
        values.setdefault("retry", RetryConfig.from_settings(settings))
        return super().from_settings(settings, **values)
