"""Prometheus metrics of a crawl: an HTTP endpoint, a Pushgateway, or both.

Everything except the download-latency histogram and a few live gauges is
derived from the crawl's stats at collection time
(:mod:`wfcrawl.observability.statscollector`), so metrics always equal stats.

* ``WFCRAWL_METRICS_PORT`` (a port, ``[first, last]`` range, or 0 for any free
  port): serve ``/metrics`` for the whole crawl. For long crawls scraped by
  Prometheus. The endpoint is served by the Twisted reactor itself, so stats
  are read on the thread that writes them.
* ``WFCRAWL_METRICS_PUSHGATEWAY`` (URL): push at the end (and every
  ``WFCRAWL_METRICS_PUSH_INTERVAL`` seconds), for crawls too short to be
  scraped. The push runs in a thread; a dead gateway is logged, never fatal.

With neither set the extension is off (``NotConfigured``). prometheus_client
is imported only when it is on (``pip install 'wfcrawl[metrics]'``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.reactor import listen_tcp
from twisted.internet import defer, task, threads
from twisted.web.resource import Resource
from twisted.web.server import Site

from wfcrawl.context import CrawlContext
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.observability.outcome import OutcomeMonitor
from wfcrawl.observability.progress import phase_counts, phases_of
from wfcrawl.observability.statscollector import StatsFamilies, build_families
from wfcrawl.settings.table import Config, setting

logger = logging.getLogger(__name__)


def port_range(value: Any) -> list[int] | None:
    """``WFCRAWL_METRICS_PORT`` as Scrapy's ``listen_tcp`` range; None: no endpoint."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = value.replace("-", ",").split(",")
    if not isinstance(value, (list, tuple)):
        value = [value]
    try:
        ports = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigurationError(f"WFCRAWL_METRICS_PORT must be a port or a range 'FIRST-LAST', not {value!r}") from None
    if len(ports) > 2 or any(not 0 <= p < 65536 for p in ports) or (len(ports) == 2 and ports[0] > ports[1]):
        raise ConfigurationError(f"WFCRAWL_METRICS_PORT: invalid port range {value!r}")
    return [] if ports == [0] else ports  # listen_tcp: [] means any free port


@dataclass(frozen=True)
class MetricsConfig(Config):
    ports: list[int] | None = setting("WFCRAWL_METRICS_PORT", port_range)
    host: str = setting("WFCRAWL_METRICS_HOST")
    pushgateway: str = setting("WFCRAWL_METRICS_PUSHGATEWAY")
    push_job: str = setting("WFCRAWL_METRICS_PUSH_JOB")
    push_interval: float = setting("WFCRAWL_METRICS_PUSH_INTERVAL")
    push_timeout: float = setting("WFCRAWL_METRICS_PUSH_TIMEOUT")
    final_scrape_timeout: float = setting("WFCRAWL_METRICS_FINAL_SCRAPE_TIMEOUT")
    latency_buckets: tuple[float, ...] = setting("WFCRAWL_METRICS_LATENCY_BUCKETS")
    max_auto_series: int = setting("WFCRAWL_METRICS_MAX_AUTO_SERIES")
    process_metrics: bool = setting("WFCRAWL_METRICS_PROCESS")


class MetricsPage(Resource):
    """``GET`` (any path): the registry in the text exposition format.

    Rendered synchronously on the reactor thread: collecting is a walk over
    the stats dict, and doing it there means no other thread reads stats
    while the crawl writes them.
    """

    isLeaf = True  # noqa: N815 (Twisted API)

    def __init__(self, registry: Any, on_scrape: Callable[[], None]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry
        self.on_scrape = on_scrape

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 (Twisted API)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self.registry)
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        self.on_scrape()
        return body


class _QuietSite(Site):
    noisy = False

    def log(self, request: Any) -> None:
        """No access log line per scrape."""


class _Frozen:
    """A collector returning families collected earlier (pushes run in a thread)."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


class PrometheusMetrics:
    """The metrics extension; also a prometheus_client collector of the stats."""

    def __init__(self, crawler: Crawler, config: MetricsConfig) -> None:
        self.crawler = crawler
        self.config = config
        self.mapping = StatsFamilies(max_auto_series=config.max_auto_series)
        self.started = time.time()
        self.finished: tuple[str, str] | None = None  # (reason, status) once closed
        #: The execution's outcome once decided: (status, reason codes); None for a fleet
        #: instance that stopped while the others go on.
        self.outcome: tuple[str, list[str]] | None = None
        self.listener: Any = None
        self.pusher: task.LoopingCall | None = None
        self._final_scrape: defer.Deferred[None] | None = None
        from prometheus_client import CollectorRegistry, Histogram, ProcessCollector

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        if config.process_metrics:
            ProcessCollector(registry=self.registry)
        self.latency = Histogram(
            "wfcrawl_download_latency_seconds", "Time from sending a request to receiving its response headers, by phase.",
            ["workflow", "phase"], buckets=config.latency_buckets, registry=self.registry,
        )

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PrometheusMetrics:
        config = MetricsConfig.from_settings(crawler.settings)
        if config.ports is None and not config.pushgateway:
            raise NotConfigured
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "WFCRAWL_METRICS_PORT/WFCRAWL_METRICS_PUSHGATEWAY need prometheus_client: "
                "pip install 'wfcrawl[metrics]'"
            ) from None
        ext = cls(crawler, config)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.response_received, signal=signals.response_received)
        return ext

    # ------------------------------------------------------------ data

    @property
    def workflow(self) -> str:
        return CrawlContext.of(self.crawler).workflow

    def collect(self) -> list[Any]:
        """The stats as metric families (runs on the reactor thread)."""
        from prometheus_client.core import GaugeMetricFamily

        stats_collector = self.crawler.stats
        assert stats_collector is not None
        stats = dict(stats_collector.get_stats())
        kinds = getattr(stats_collector, "kinds", None)
        common = {"workflow": self.workflow}
        families = build_families(self.mapping.samples(stats, kinds), common, self.mapping.help)

        def gauge(name: str, value: float, **labels: str) -> None:
            family = GaugeMetricFamily(name, self.mapping.help(name), labels=["workflow", *labels])
            family.add_metric([common["workflow"], *labels.values()], value)
            families.append(family)

        gauge("wfcrawl_crawl_info", 1, execution_id=CrawlContext.of(self.crawler).execution_id or "")
        gauge("wfcrawl_crawl_start_time_seconds", self.started)
        gauge("wfcrawl_crawl_running", 0 if self.finished else 1)
        if self.finished:
            gauge("wfcrawl_crawl_finished", 1, reason=self.finished[0], status=self.finished[1])
        if self.outcome is not None:
            outcome = GaugeMetricFamily("wfcrawl_crawl_outcome", self.mapping.help("wfcrawl_crawl_outcome"),
                                        labels=["workflow", "outcome", "reason"])
            for code in self.outcome[1] or [""]:
                outcome.add_metric([common["workflow"], self.outcome[0], code], 1)
            families.append(outcome)
        engine = self.crawler.engine
        active = len(engine.downloader.active) if engine is not None and not self.finished else 0
        gauge("wfcrawl_downloader_active_requests", active)
        pending = sum(v for k, v in stats.items() if k.startswith("scheduler/enqueued/")) - sum(
            v for k, v in stats.items() if k.startswith("scheduler/dequeued/"))
        gauge("wfcrawl_scheduler_pending_requests", pending)
        queue = GaugeMetricFamily("wfcrawl_phase_queue_requests", self.mapping.help("wfcrawl_phase_queue_requests"),
                                  labels=["workflow", "phase"])
        for phase in phases_of(stats):
            queue.add_metric([common["workflow"], phase], phase_counts(stats, phase)["queue"])
        families.append(queue)
        return families

    def response_received(self, response: Response, request: Any, spider: Spider) -> None:
        latency = request.meta.get("download_latency")
        if latency is not None:
            self.latency.labels(self.workflow, request.meta.get("wfcrawl_phase", "")).observe(latency)

    # ------------------------------------------------------------ lifecycle

    def spider_opened(self, spider: Spider) -> None:
        if self.config.ports is not None:
            self._listen()
        if self.config.pushgateway and self.config.push_interval > 0:
            self.pusher = task.LoopingCall(self.push)
            self.pusher.start(self.config.push_interval, now=False)

    def _listen(self) -> None:
        site = _QuietSite(MetricsPage(self.registry, self._scraped))  # type: ignore[no-untyped-call]
        assert self.config.ports is not None
        self.listener = listen_tcp(self.config.ports, self.config.host, site)  # type: ignore[arg-type]
        port = self.listener.getHost().port
        assert self.crawler.stats is not None
        self.crawler.stats.set_value("wfcrawl/metrics/port", port)
        logger.info("Prometheus metrics at http://%s:%s/metrics", self.config.host, port,
                    extra={"spider": self.crawler.spider})

    def _scraped(self) -> None:
        final = self._final_scrape
        if self.finished and final is not None and not final.called:
            final.callback(None)  # the response is written before the listener stops

    def push(self) -> defer.Deferred[None]:
        """Push a snapshot (taken here, on the reactor thread) from a thread."""
        from prometheus_client import push_to_gateway
        from prometheus_client.core import GaugeMetricFamily

        families = list(self.registry.collect())
        pushed = GaugeMetricFamily("wfcrawl_crawl_last_push_time_seconds", self.mapping.help(
            "wfcrawl_crawl_last_push_time_seconds"), labels=["workflow"])
        pushed.add_metric([self.workflow], time.time())
        snapshot = _Frozen([*families, pushed])
        d = threads.deferToThread(
            push_to_gateway, self.config.pushgateway, job=self.config.push_job, registry=snapshot,
            grouping_key={"workflow": self.workflow}, timeout=self.config.push_timeout,
        )

        def failed(failure: Any) -> None:
            assert self.crawler.stats is not None
            self.crawler.stats.inc_value("wfcrawl/metrics/push_failed")
            logger.warning("Pushing metrics to %s failed: %s", self.config.pushgateway, failure.value,
                           extra={"spider": self.crawler.spider})

        d.addErrback(failed)
        return d

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        # Created before `finished` is visible: a scrape showing the closed
        # crawl, from here on, is the final scrape.
        self._final_scrape = defer.Deferred()
        monitor = OutcomeMonitor.of(self.crawler)
        end = await monitor.ended() if monitor is not None else None
        if end is not None and end.outcome is not None:
            self.outcome = (end.outcome.status, list(dict.fromkeys(end.outcome.codes)))
        self.finished = (reason, self.outcome[0] if self.outcome is not None else "stopped")
        if self.pusher is not None and self.pusher.running:
            self.pusher.stop()
        if self.config.pushgateway:
            await maybe_deferred_to_future(self.push())
        if self.listener is None:
            return
        if self.config.final_scrape_timeout > 0 and not self._final_scrape.called:
            # Keep serving until Prometheus has seen the final values (or the
            # timeout): a short crawl would otherwise end between two scrapes.
            timer = call_later(self.config.final_scrape_timeout, self._final_scrape.callback, None)
            await maybe_deferred_to_future(self._final_scrape)
            timer.cancel()
        await maybe_deferred_to_future(defer.maybeDeferred(self.listener.stopListening))
