"""Settings of the launcher services, read once into a frozen dataclass.

Launchers are not crawls, but they are configured the same way: wfcrawl's
project settings, the add-on's defaults and environment variables, then
``-s NAME=VALUE`` from the command line (:func:`launcher_settings`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrapy.settings import BaseSettings, Settings

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.middlewares.ssrf import AddressPolicy
from wfcrawl.storage.executions import ExecutionStore, MemoryExecutionStore
from wfcrawl.workflow.source import MAX_DOCUMENT_BYTES

logger = logging.getLogger(__name__)


def launcher_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Project settings + wfcrawl defaults + environment + ``overrides`` (command line)."""
    import os

    from scrapy.utils.conf import closest_scrapy_cfg
    from scrapy.utils.project import get_project_settings

    from wfcrawl.addon import WfcrawlAddon

    if "SCRAPY_SETTINGS_MODULE" in os.environ or closest_scrapy_cfg():
        settings = get_project_settings()  # inside a Scrapy project: its settings
    else:
        settings = Settings()
        settings.setmodule("wfcrawl.settings", priority="project")
    WfcrawlAddon().update_settings(settings)
    settings.setdict(overrides or {}, priority="cmdline")
    return settings


def getlist_json(settings: BaseSettings, name: str) -> list[str]:
    """A list setting that may also be given as a JSON array (arguments contain commas)."""
    value = settings.get(name)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{name}: invalid JSON array: {exc}") from None
        return [str(v) for v in parsed]
    return [v for v in settings.getlist(name) if v != ""]


@dataclass(frozen=True)
class LauncherConfig:
    workdir: Path
    max_crawls: int
    max_document_bytes: int
    crawl_args: tuple[str, ...]
    crawl_timeout: float
    kill_timeout: float
    poll_interval: float
    log_tail_lines: int
    forward_logs: bool
    keep_files: bool
    script_modules: tuple[str, ...]
    allowed_env: frozenset[str]
    allowed_networks: tuple[str, ...]
    policy: AddressPolicy

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> LauncherConfig:
        max_bytes = settings.getint("WFCRAWL_LAUNCHER_MAX_DOCUMENT_BYTES")
        if not 0 < max_bytes <= MAX_DOCUMENT_BYTES:
            raise ConfigurationError(
                f"WFCRAWL_LAUNCHER_MAX_DOCUMENT_BYTES must be between 1 and {MAX_DOCUMENT_BYTES}"
            )
        if settings.getint("WFCRAWL_LAUNCHER_MAX_CRAWLS") < 1:
            raise ConfigurationError("WFCRAWL_LAUNCHER_MAX_CRAWLS must be at least 1")
        networks = tuple(getlist_json(settings, "WFCRAWL_SSRF_ALLOWED_NETWORKS"))
        workdir = settings.get("WFCRAWL_LAUNCHER_WORKDIR") or str(Path(tempfile.gettempdir()) / "wfcrawl-launcher")
        return cls(
            workdir=Path(workdir),
            max_crawls=settings.getint("WFCRAWL_LAUNCHER_MAX_CRAWLS"),
            max_document_bytes=max_bytes,
            crawl_args=tuple(getlist_json(settings, "WFCRAWL_LAUNCHER_CRAWL_ARGS")),
            crawl_timeout=settings.getfloat("WFCRAWL_LAUNCHER_CRAWL_TIMEOUT"),
            kill_timeout=settings.getfloat("WFCRAWL_LAUNCHER_KILL_TIMEOUT"),
            poll_interval=settings.getfloat("WFCRAWL_LAUNCHER_POLL_INTERVAL"),
            log_tail_lines=settings.getint("WFCRAWL_LAUNCHER_LOG_TAIL_LINES"),
            forward_logs=settings.getbool("WFCRAWL_LAUNCHER_FORWARD_LOGS"),
            keep_files=settings.getbool("WFCRAWL_LAUNCHER_KEEP_FILES"),
            # Untrusted documents: an empty allowlist means no script module at all.
            script_modules=tuple(getlist_json(settings, "WFCRAWL_SCRIPT_MODULES")),
            allowed_env=frozenset(getlist_json(settings, "WFCRAWL_LAUNCHER_ALLOWED_ENV")),
            allowed_networks=networks,
            policy=AddressPolicy.from_list(networks),  # a bad network fails here, at start
        )


def open_store(settings: BaseSettings) -> ExecutionStore:
    """PostgreSQL when ``DATABASE_URL`` is set (checked now); else memory, with a warning."""
    if settings.get("DATABASE_URL"):
        from wfcrawl.storage.postgres import store_from_settings

        store = store_from_settings(settings)
        assert store is not None
        store.ensure_schema()  # an unreachable database is an error at start
        return store
    logger.warning(
        "DATABASE_URL is not set: executions are kept in this process's memory (lost at exit, "
        "not shared between instances: launches are idempotent only within this process)"
    )
    return MemoryExecutionStore()


def open_registry(settings: BaseSettings) -> Any:
    """The workflow registry: PostgreSQL with ``DATABASE_URL``, else a directory."""
    from wfcrawl.launcher.registry import DirectoryWorkflowRegistry, PostgresWorkflowRegistry

    if settings.get("DATABASE_URL"):
        return PostgresWorkflowRegistry(
            settings["DATABASE_URL"], schema=settings.get("WFCRAWL_POSTGRES_SCHEMA") or "wfcrawl",
        )
    return DirectoryWorkflowRegistry(settings.get("WFCRAWL_LAUNCHER_WORKFLOWS_DIR"))
