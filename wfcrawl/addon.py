"""The wfcrawl Scrapy add-on: wires wfcrawl's components into a project.

``ADDONS = {"wfcrawl.addon.WfcrawlAddon": 0}``. It sets wfcrawl's defaults,
the fast profile (``WFCRAWL_FAST_PROFILE``), the summary extension, and reads
the environment variables that name services (the only place wfcrawl reads
the environment for settings).
"""

from __future__ import annotations

import os
from typing import Any

from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings
from scrapy.utils.misc import load_object

from wfcrawl.distributed.setup import install_redis_scheduler
from wfcrawl.render.setup import install_rendering
from wfcrawl.settings.defaults import (
    CONSOLE_DEFAULTS,
    DEFAULTS,
    FAST_PROFILE,
    FAST_PROFILE_DISABLED,
    FAST_PROFILE_REPLACED,
    SAFE_DEFAULTS,
)
from wfcrawl.settings.table import environment_settings, read
from wfcrawl.utils import logfilters
from wfcrawl.utils.publicsuffix import use_bundled_suffix_list

LOGSTATS = "scrapy.extensions.logstats.LogStats"

#: (setting, component class path), order: what the add-on plugs into Scrapy.
COMPONENTS: tuple[tuple[tuple[str, str], int], ...] = (
    # The outcome (wfcrawl.outcome): decided once at close, read by the components below.
    (("EXTENSIONS", "wfcrawl.observability.outcome.OutcomeMonitor"), 700),
    (("EXTENSIONS", "wfcrawl.observability.summary.CrawlSummary"), 900),
    (("EXTENSIONS", "wfcrawl.observability.statsfile.StatsFile"), 910),
    # SSRF guard (docs/launching.md): NotConfigured unless WFCRAWL_SSRF_GUARD_ENABLED
    # (launchers set it). First of all: it must not depend on a workflow's allowed_domains.
    (("DOWNLOADER_MIDDLEWARES", "wfcrawl.middlewares.ssrf.SSRFGuardMiddleware"), 10),
    # Per-slot concurrency that Scrapy 2.14+ does not enforce with the asyncio
    # reactor: last of all, right before the download.
    (("DOWNLOADER_MIDDLEWARES", "wfcrawl.middlewares.concurrency.SlotConcurrencyMiddleware"), 1000),
    # Storage (docs/storage.md): each is NotConfigured until DATABASE_URL / GCS_BUCKET is set.
    # The tracker of what they made durable, which the Redis broker waits for (always on, cheap).
    (("EXTENSIONS", "wfcrawl.durability.DurabilityTracker"), 0),
    (("ITEM_PIPELINES", "wfcrawl.pipelines.validation.ItemValidationPipeline"), 100),
    (("ITEM_PIPELINES", "wfcrawl.pipelines.postgres.PostgresPipeline"), 500),
    (("ITEM_PIPELINES", "wfcrawl.pipelines.gcs.GcsPipeline"), 510),
    (("EXTENSIONS", "wfcrawl.observability.executions.ExecutionRecorder"), 920),
    # Operations (docs/operations.md): metrics are NotConfigured without a port or
    # Pushgateway, webhooks without receivers.
    (("EXTENSIONS", "wfcrawl.observability.progress.PhaseStats"), 800),
    (("EXTENSIONS", "wfcrawl.observability.progress.CrawlProgress"), 810),
    (("EXTENSIONS", "wfcrawl.observability.metrics.PrometheusMetrics"), 820),
    (("EXTENSIONS", "wfcrawl.observability.webhooks.Webhooks"), 830),
)

#: Environment variables read into settings of the same name: service addresses,
#: and secrets kept out of command lines and images (``environment=True`` in the table).
ENVIRONMENT_SETTINGS: tuple[str, ...] = environment_settings()


def _replace_component(settings: BaseSettings, setting: str, path: str, replacement: str) -> None:
    """Put ``replacement`` at the order of Scrapy's ``path`` in ``setting``, unless
    the project's ``setting`` names ``path`` (an order of its own, or None)."""
    component = load_object(path)
    if any(_loads_to(k, component) for k in settings.getdict(setting)):
        return
    order = settings.getdict(f"{setting}_BASE").get(path)
    if order is None:  # not one of this Scrapy version's defaults
        return
    settings.setdefault_in_component_priority_dict(setting, component, None)
    settings.setdefault_in_component_priority_dict(setting, load_object(replacement), order)


def _loads_to(key: Any, component: Any) -> bool:
    """Whether a component dict key (path or class) is ``component``; a path that
    does not load is left for Scrapy to report."""
    if not isinstance(key, str):
        return key is component
    try:
        return load_object(key) is component
    except (ImportError, NameError, ValueError):
        return False


class WfcrawlAddon:
    def update_settings(self, settings: BaseSettings) -> None:
        for name, value in DEFAULTS.items():
            settings.set(name, value, priority="default")
        for name in ENVIRONMENT_SETTINGS:
            if os.environ.get(name):
                # Environment beats settings files, the command line beats both.
                settings.set(name, os.environ[name], priority="project")
        for name, value in SAFE_DEFAULTS.items():
            # Always: whatever the project, a spider or the command line set.
            settings.set(name, value, priority=max(settings.getpriority(name) or 0, SETTINGS_PRIORITIES["project"]))
        for name, value in CONSOLE_DEFAULTS.items():
            settings.set(name, value, priority="addon")
        if read(settings, "WFCRAWL_PROGRESS_ENABLED"):
            # wfcrawl's progress line replaces Scrapy's "Crawled N pages" line.
            settings.setdefault_in_component_priority_dict("EXTENSIONS", load_object(LOGSTATS), None)
        use_bundled_suffix_list()
        logfilters.install()
        if read(settings, "WFCRAWL_FAST_PROFILE"):
            for name, value in FAST_PROFILE.items():
                settings.set(name, value, priority="addon")
            for setting, path in FAST_PROFILE_DISABLED:
                try:
                    component = load_object(path)
                except (ImportError, NameError):  # not in this Scrapy version: nothing to switch off
                    continue
                settings.setdefault_in_component_priority_dict(setting, component, None)
            for setting, path, replacement in FAST_PROFILE_REPLACED:
                _replace_component(settings, setting, path, replacement)
        # setdefault: a project that set (or disabled with None) a component keeps its choice.
        for (setting, path), order in COMPONENTS:
            settings.setdefault_in_component_priority_dict(setting, load_object(path), order)
        if settings.getpriority("STATS_CLASS") == 0:  # Scrapy's default: not the project's choice
            # Scrapy's MemoryStatsCollector that also records which stats are
            # counters, for the Prometheus export (docs/operations.md).
            settings.set("STATS_CLASS", "wfcrawl.observability.statscollector.MetricsStatsCollector", priority="addon")
        # Last: it reads the concurrency set above and by the workflow. Only when
        # a workflow renders (or WFCRAWL_RENDER_ENABLED) is scrapy-playwright used.
        install_rendering(settings)
        # With REDIS_URL: scrapy-redis's scheduler with wfcrawl's leased queue,
        # dupefilter and serializer (docs/distributed.md); without: nothing changes.
        install_redis_scheduler(settings)
