"""Settings of the launcher services, read once into a frozen dataclass.

Launchers are not crawls, but they are configured the same way: wfcrawl's
project settings, the add-on's defaults and environment variables, then
``-s NAME=VALUE`` from the command line (:func:`launcher_settings`).
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scrapy.settings import BaseSettings, Settings
from scrapy.utils.conf import arglist_to_dict

from wfcrawl.addon import WfcrawlAddon
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.registry import DirectoryWorkflowRegistry, PostgresWorkflowRegistry
from wfcrawl.security.ssrf import AddressPolicy
from wfcrawl.settings.table import Config, read, setting
from wfcrawl.storage.executions import ExecutionStore, MemoryExecutionStore
from wfcrawl.storage.postgres.executions import store_from_settings
from wfcrawl.storage.sqlite.executions import SQLiteExecutionStore

logger = logging.getLogger(__name__)


def launcher_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Project settings + wfcrawl defaults + environment + ``overrides`` (command line)."""
    import os

    from scrapy.utils.conf import closest_scrapy_cfg
    from scrapy.utils.project import get_project_settings

    if "SCRAPY_SETTINGS_MODULE" in os.environ or closest_scrapy_cfg():
        settings = get_project_settings()  # inside a Scrapy project: its settings
    else:
        settings = Settings()
        settings.setmodule("wfcrawl.settings", priority="project")
    WfcrawlAddon().update_settings(settings)
    settings.setdict(overrides or {}, priority="cmdline")
    return settings


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """The ``-s NAME=VALUE`` options of the ``wfcrawl`` commands, parsed as Scrapy's are."""
    try:
        return arglist_to_dict(list(pairs))
    except ValueError:
        bad = next(pair for pair in pairs if "=" not in pair)
        raise ConfigurationError(f"-s takes NAME=VALUE, not {bad!r}") from None


def _workdir(value: str) -> Path:
    return Path(value or Path(tempfile.gettempdir()) / "wfcrawl-launcher")


@dataclass(frozen=True)
class LauncherConfig(Config):
    workdir: Path = setting("WFCRAWL_LAUNCHER_WORKDIR", _workdir)
    max_crawls: int = setting("WFCRAWL_LAUNCHER_MAX_CRAWLS")
    max_document_bytes: int = setting("WFCRAWL_LAUNCHER_MAX_DOCUMENT_BYTES")
    crawl_args: tuple[str, ...] = setting("WFCRAWL_LAUNCHER_CRAWL_ARGS")
    crawl_timeout: float = setting("WFCRAWL_LAUNCHER_CRAWL_TIMEOUT")
    kill_timeout: float = setting("WFCRAWL_LAUNCHER_KILL_TIMEOUT")
    poll_interval: float = setting("WFCRAWL_LAUNCHER_POLL_INTERVAL")
    log_tail_lines: int = setting("WFCRAWL_LAUNCHER_LOG_TAIL_LINES")
    forward_logs: bool = setting("WFCRAWL_LAUNCHER_FORWARD_LOGS")
    keep_files: bool = setting("WFCRAWL_LAUNCHER_KEEP_FILES")
    #: Untrusted documents: an empty allowlist means no script module at all.
    script_modules: tuple[str, ...] = setting("WFCRAWL_SCRIPT_MODULES")
    allowed_env: frozenset[str] = setting("WFCRAWL_LAUNCHER_ALLOWED_ENV", frozenset)
    allowed_networks: tuple[str, ...] = setting("WFCRAWL_SSRF_ALLOWED_NETWORKS")
    #: WFCRAWL_WEBHOOKS_SECRET is set: webhooks without secret_env can sign.
    webhooks_secret: bool = setting("WFCRAWL_WEBHOOKS_SECRET", bool)
    #: Where crawls with no store of their own write their items (None: they have one).
    items_dir: Path | None = None
    policy: AddressPolicy = field(init=False)

    def __post_init__(self) -> None:
        # A bad network fails here, at start.
        object.__setattr__(self, "policy", AddressPolicy.from_list(self.allowed_networks))

    @classmethod
    def from_settings(cls, settings: BaseSettings, **values: Any) -> LauncherConfig:
        if "items_dir" not in values:
            values["items_dir"] = default_items_dir(settings)
        return super().from_settings(settings, **values)


def item_stores(settings: BaseSettings) -> list[str]:
    """What the crawls of these settings store their items in (their environment and
    project settings, plus ``WFCRAWL_LAUNCHER_CRAWL_ARGS``)."""
    stores = []
    if read(settings, "DATABASE_URL") and read(settings, "WFCRAWL_POSTGRES_ENABLED"):
        stores.append("DATABASE_URL")
    if read(settings, "GCS_BUCKET") and read(settings, "WFCRAWL_GCS_ENABLED"):
        stores.append("GCS_BUCKET")
    args = read(settings, "WFCRAWL_LAUNCHER_CRAWL_ARGS")
    if settings.getdict("FEEDS") or any(a in ("-o", "-O", "--output", "--overwrite-output") or a.startswith("FEEDS=")
                                       for a in args):
        stores.append("FEEDS")
    return stores


def default_items_dir(settings: BaseSettings) -> Path | None:
    """The directory of the default item sink, when launched crawls have no store; a
    launcher whose crawls would store their items nowhere refuses to start."""
    if item_stores(settings):
        return None
    items_dir = read(settings, "WFCRAWL_LAUNCHER_ITEMS_DIR")
    if not items_dir:
        raise ConfigurationError(
            "launched crawls would store their items nowhere: set DATABASE_URL or GCS_BUCKET (or FEEDS, or -o in "
            "WFCRAWL_LAUNCHER_CRAWL_ARGS), or WFCRAWL_LAUNCHER_ITEMS_DIR for JSON-lines files"
        )
    return Path(items_dir).resolve()


def open_store(settings: BaseSettings) -> ExecutionStore:
    """PostgreSQL when ``DATABASE_URL`` is set (checked now); else the SQLite file
    ``WFCRAWL_SQLITE_PATH``; with that empty too, this process's memory (with a warning)."""
    if read(settings, "DATABASE_URL"):
        store = store_from_settings(settings)
        assert store is not None
        store.ensure_schema()  # an unreachable database is an error at start
        return store
    path = read(settings, "WFCRAWL_SQLITE_PATH")
    if path:
        try:
            sqlite_store = SQLiteExecutionStore(path)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the SQLite database {path} (WFCRAWL_SQLITE_PATH): {exc}") from None
        logger.info("DATABASE_URL is not set: executions are kept in %s (this machine only)", path)
        return sqlite_store
    logger.warning(
        "Neither DATABASE_URL nor WFCRAWL_SQLITE_PATH is set: executions are kept in this process's memory "
        "(lost at exit, not shared between instances: launches are idempotent only within this process)"
    )
    return MemoryExecutionStore()


def open_registry(settings: BaseSettings) -> Any:
    """The workflow registry: PostgreSQL with ``DATABASE_URL``, else a directory."""
    dsn = read(settings, "DATABASE_URL")
    if dsn:
        return PostgresWorkflowRegistry(dsn, schema=read(settings, "WFCRAWL_POSTGRES_SCHEMA"))
    return DirectoryWorkflowRegistry(read(settings, "WFCRAWL_LAUNCHER_WORKFLOWS_DIR"))
