"""Turn a crawl's stats into Prometheus metric families.

Metrics are *derived from the stats* at scrape (or push) time, never counted
separately, so the two cannot drift: ``wfcrawl_items_total{type="product"}``
is ``wfcrawl/items/product``, always. Like statsd_exporter's mapping config,
an ordered table of rules maps hierarchical stat keys to a metric family plus
labels taken from the key (regex groups). Rules only capture parts of keys
whose values are bounded by code or by the workflow document (phase and item
type names, drop reasons, exception class names, HTTP status codes), never
URLs.

A ``wfcrawl/...`` stat that no rule maps (a component added later, say the
Redis queue's ``wfcrawl/scheduler/leases/expired``) still becomes a metric,
``wfcrawl_stat_scheduler_leases_expired_total``: counter or gauge depending on
whether the stat is incremented or set (see :class:`MetricsStatsCollector`),
capped at ``WFCRAWL_METRICS_MAX_AUTO_SERIES`` series. Other projects' stats
that no rule maps are not exported.

This module needs prometheus_client only when :meth:`StatsFamilies.collect`
runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from scrapy.statscollectors import MemoryStatsCollector

COUNTER, GAUGE, IGNORE = "counter", "gauge", "ignore"


@dataclass(frozen=True)
class Rule:
    """Stat keys matching ``pattern`` (fullmatch) are samples of ``family``.

    Named groups become labels, ``labels`` adds constant ones. ``ignore``
    rules keep totals whose breakdown is exported (``wfcrawl/pages/failed``
    is the sum of ``wfcrawl/pages/failed/<reason>``) out of the fallback.
    """

    pattern: str
    family: str
    kind: str
    help: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


_NAME = r"[^/]+"

#: The mapping, first match wins. Documented in docs/operations.md.
RULES: tuple[Rule, ...] = (
    # --- Scrapy's own stats
    Rule("downloader/request_count", "wfcrawl_requests_total", COUNTER, "Requests sent by the downloader (retries included)."),
    Rule(r"downloader/response_status_count/(?P<status>\d+)", "wfcrawl_responses_total", COUNTER, "Responses downloaded, by HTTP status."),
    Rule(r"downloader/exception_type_count/(?P<exception>.+)", "wfcrawl_download_errors_total", COUNTER, "Downloads that failed with an exception, by exception type."),
    Rule("downloader/response_bytes", "wfcrawl_response_bytes_total", COUNTER, "Bytes of responses downloaded."),
    Rule("item_scraped_count", "wfcrawl_items_scraped_total", COUNTER, "Items that went through every pipeline."),
    Rule(r"item_dropped_reasons_count/(?P<reason>.+)", "wfcrawl_items_dropped_total", COUNTER,
         "Items dropped, by reason and stage (extract: by the workflow; pipeline: DropItem).", {"stage": "pipeline"}),
    Rule(r"retry/reason_count/(?P<reason>.+)", "wfcrawl_request_retries_total", COUNTER, "Requests retried, by reason."),
    Rule("retry/max_reached", "wfcrawl_request_retries_exhausted_total", COUNTER, "Requests that failed after their last retry."),
    Rule("dupefilter/filtered", "wfcrawl_links_dropped_total", COUNTER,
         "Links not followed, by reason (duplicate, offsite, robots, max_depth, no_transition, domain, ...).", {"reason": "duplicate"}),
    Rule("offsite/filtered", "wfcrawl_links_dropped_total", COUNTER, labels={"reason": "offsite"}),
    Rule("robotstxt/forbidden", "wfcrawl_links_dropped_total", COUNTER, labels={"reason": "robots"}),
    Rule("urllength/request_ignored_count", "wfcrawl_links_dropped_total", COUNTER, labels={"reason": "url_length"}),
    Rule(r"scheduler/enqueued/(?P<queue>memory|disk|redis)", "wfcrawl_scheduler_enqueued_total", COUNTER, "Requests pushed into the scheduler queue, by queue."),
    Rule(r"scheduler/dequeued/(?P<queue>memory|disk|redis)", "wfcrawl_scheduler_dequeued_total", COUNTER, "Requests popped from the scheduler queue, by queue."),
    Rule(r"log_count/(?P<level>[A-Z]+)", "wfcrawl_log_messages_total", COUNTER, "Log messages, by level."),
    Rule(r"spider_exceptions/(?P<exception>(?!count$)[^/]+)", "wfcrawl_spider_exceptions_total", COUNTER, "Exceptions raised in spider callbacks, by type."),
    Rule("memusage/max", "wfcrawl_memory_max_bytes", GAUGE, "Peak resident memory of the crawl process (MEMUSAGE_ENABLED)."),
    Rule("request_depth_max", "wfcrawl_request_depth_max", GAUGE, "Deepest request depth seen."),
    # --- wfcrawl's spider (totals first: their breakdowns carry them)
    Rule("wfcrawl/pages/failed", "", IGNORE),
    Rule(r"wfcrawl/pages/failed/(?P<reason>.+)", "wfcrawl_pages_failed_total", COUNTER, "Pages that could not be fetched, by reason (http_404, TimeoutError, ...)."),
    Rule(r"wfcrawl/pages/error/(?P<reason>.+)", "wfcrawl_page_errors_total", COUNTER, "Fetched pages that could not be processed, by reason (not_text, empty, bad_json)."),
    Rule(r"wfcrawl/pages/skipped/(?P<reason>.+)", "wfcrawl_pages_skipped_total", COUNTER, "Fetched pages not processed on purpose, by reason."),
    Rule(rf"wfcrawl/pages/(?P<phase>{_NAME})", "wfcrawl_pages_total", COUNTER, "Responses handled, by phase."),
    Rule(rf"wfcrawl/items/dropped/(?P<reason>{_NAME})", "wfcrawl_items_dropped_total", COUNTER, labels={"stage": "extract"}),
    Rule(rf"wfcrawl/items/dropped/(?P<reason>{_NAME})/(?P<type>.+)", "wfcrawl_items_dropped_by_type_total", COUNTER, "Items dropped by the workflow, by reason and item type."),
    Rule(rf"wfcrawl/items/(?P<type>{_NAME})", "wfcrawl_items_total", COUNTER, "Items extracted, by item type."),
    Rule(r"wfcrawl/links/dropped/(?P<reason>.+)", "wfcrawl_links_dropped_total", COUNTER),
    Rule("wfcrawl/links/extracted", "wfcrawl_links_extracted_total", COUNTER, "Links found by extract_links and paginate nodes (after their filters)."),
    Rule("wfcrawl/links/scheduled", "wfcrawl_links_scheduled_total", COUNTER, "Links routed to a phase and requested."),
    Rule(r"wfcrawl/nodes/error/(?P<exception>.+)", "wfcrawl_node_errors_total", COUNTER, "Nodes that raised, by exception type."),
    Rule(r"wfcrawl/forms/(?P<outcome>.+)", "wfcrawl_forms_total", COUNTER, "Form nodes, by outcome (submitted, not_found)."),
    Rule(r"wfcrawl/fields/invalid/(?P<type>.+)", "wfcrawl_fields_invalid_total", COUNTER, "Field values that failed type coercion, by item type."),
    Rule(rf"wfcrawl/nodes/(?P<result>matched|nomatch)/(?P<phase>{_NAME})/(?P<node>.+)", "wfcrawl_node_pages_total", COUNTER,
         "Pages a node ran on, by phase, node and result (matched: it produced something; nomatch: nothing)."),
    Rule(rf"wfcrawl/fields/filled/(?P<type>{_NAME})/(?P<field>.+)", "wfcrawl_fields_filled_total", COUNTER,
         "Items in which a field the workflow's expect: block names is not empty, by item type and field."),
    Rule(r"wfcrawl/start_requests/(?P<result>fetched|failed)", "wfcrawl_start_requests_total", COUNTER,
         "Start requests, by result (fetched, failed)."),
    # The outcome is exported as wfcrawl_crawl_outcome (the metrics extension).
    Rule("wfcrawl/outcome", "", IGNORE),
    Rule(r"wfcrawl/outcome/(?P<what>.+)", "", IGNORE),
    # --- per phase (wfcrawl.observability.progress.PhaseStats)
    Rule(rf"wfcrawl/phases/(?P<phase>{_NAME})/scheduled", "wfcrawl_phase_requests_scheduled_total", COUNTER, "Requests handed to the scheduler, by phase."),
    Rule(rf"wfcrawl/phases/(?P<phase>{_NAME})/duplicates", "wfcrawl_phase_requests_duplicate_total", COUNTER, "Requests the scheduler refused as duplicates, by phase."),
    Rule(rf"wfcrawl/phases/(?P<phase>{_NAME})/requests", "wfcrawl_phase_requests_total", COUNTER, "Requests that reached the downloader, by phase."),
    Rule(rf"wfcrawl/phases/(?P<phase>{_NAME})/items", "wfcrawl_phase_items_total", COUNTER, "Items scraped (through the pipelines), by phase."),
    # --- operations
    Rule("wfcrawl/metrics/port", "", IGNORE),
    Rule("wfcrawl/progress/stalls", "wfcrawl_crawl_stalls_total", COUNTER, "Times the crawl was detected stalled."),
    Rule(r"wfcrawl/webhooks/(?P<outcome>delivered|failed)", "wfcrawl_webhooks_total", COUNTER, "Webhook notifications, by outcome (failed: gave up)."),
    Rule("wfcrawl/webhooks/attempts", "wfcrawl_webhook_attempts_total", COUNTER, "Webhook HTTP attempts (retries included)."),
    # --- Redis scheduler and shared rate limit (wfcrawl.distributed)
    Rule("wfcrawl/scheduler/queued", "wfcrawl_redis_queue_requests", GAUGE, "Requests waiting in the shared Redis queue (at this process's last sync)."),
    Rule("wfcrawl/scheduler/leases", "wfcrawl_redis_leases", GAUGE, "Requests leased by all instances (at this process's last sync)."),
    Rule(r"wfcrawl/scheduler/(?P<op>pushed|leased|released|requeued|returned)", "wfcrawl_redis_queue_operations_total", COUNTER,
         "Shared-queue operations of this process: pushed, leased, released (done), requeued (lease expired), returned."),
    Rule("wfcrawl/scheduler/leases_lost", "wfcrawl_redis_leases_lost_total", COUNTER, "Leases this process lost (expired before renewal)."),
    Rule("wfcrawl/scheduler/orphaned", "wfcrawl_redis_orphaned_leases_total", COUNTER, "Leases taken by a call whose reply was lost, given back to the queue."),
    Rule(r"wfcrawl/scheduler/filtered/(?P<where>.+)", "wfcrawl_redis_duplicates_total", COUNTER, "Requests the Redis dupefilter refused, by where it knew them from."),
    Rule("wfcrawl/ratelimit/reservations", "wfcrawl_ratelimit_reservations_total", COUNTER, "Shared rate-limit reservations made."),
    Rule("wfcrawl/ratelimit/waited", "wfcrawl_ratelimit_waits_total", COUNTER, "Requests that waited for the shared rate limit."),
    Rule("wfcrawl/ratelimit/errors", "wfcrawl_ratelimit_errors_total", COUNTER, "Shared rate-limit calls that failed (per-process delay used)."),
    Rule("wfcrawl/redis/calls", "wfcrawl_redis_calls_total", COUNTER, "Round trips to Redis."),
    Rule("wfcrawl/redis/errors", "wfcrawl_redis_errors_total", COUNTER, "Failed round trips to Redis."),
    Rule("wfcrawl/redis/stalls", "wfcrawl_redis_stalls_total", COUNTER, "Scheduler calls to Redis slower than WFCRAWL_REDIS_STALL_WARNING."),
    Rule("wfcrawl/redis/stall_max", "wfcrawl_redis_stall_max_seconds", GAUGE, "The slowest such call (seconds)."),
    # --- validation, SSRF guard, rendering
    Rule("wfcrawl/validation/invalid", "", IGNORE),
    Rule(rf"wfcrawl/validation/invalid/(?P<type>{_NAME})/(?P<reason>.+)", "wfcrawl_items_invalid_total", COUNTER, "Items failing their JSON Schema, by type and reason."),
    Rule("wfcrawl/ssrf/refused", "", IGNORE),
    Rule(r"wfcrawl/ssrf/refused/(?P<reason>.+)", "wfcrawl_ssrf_refused_total", COUNTER, "Requests the SSRF guard refused, by reason."),
    Rule(r"wfcrawl/render/failed/(?P<reason>.+)", "wfcrawl_render_failed_total", COUNTER, "Browser renderings that failed, by reason."),
    # --- conventions for pipelines and services (docs/operations.md)
    Rule(rf"wfcrawl/(?P<component>{_NAME})/errors/(?P<exception>.+)", "wfcrawl_component_errors_total", COUNTER, "Errors of a component (postgres, gcs, ...), by exception type."),
    Rule(rf"wfcrawl/(?P<component>{_NAME})/items/(?P<outcome>.+)", "wfcrawl_component_items_total", COUNTER, "Items handled by a component, by outcome (inserted, updated, written, quarantined, ...)."),
    Rule(rf"wfcrawl/(?P<component>{_NAME})/retries", "wfcrawl_component_retries_total", COUNTER, "Retried writes/calls of a component (postgres, gcs, ...)."),
    Rule(rf"wfcrawl/(?P<component>{_NAME})/batches", "wfcrawl_component_batches_total", COUNTER, "Batches written by a component."),
    Rule(rf"wfcrawl/(?P<component>{_NAME})/batch_items", "wfcrawl_component_batch_items_total", COUNTER, "Items in the batches written (average size: rate of this / rate of batches)."),
    Rule(rf"wfcrawl/(?P<component>{_NAME})/batch_seconds", "wfcrawl_component_batch_seconds_total", COUNTER, "Seconds spent writing batches (average latency: rate of this / rate of batches)."),
)

#: Families the crawl exports besides the rules (computed by the metrics extension).
EXTRA_FAMILIES: dict[str, tuple[str, str]] = {
    "wfcrawl_crawl_info": (GAUGE, "Always 1; labels name the crawl (workflow, execution_id)."),
    "wfcrawl_crawl_start_time_seconds": (GAUGE, "Unix time the crawl started."),
    "wfcrawl_crawl_running": (GAUGE, "1 while the crawl runs, 0 once it closed."),
    "wfcrawl_crawl_finished": (GAUGE, "1 once the crawl closed; labels: reason (Scrapy finish reason), status (the execution's outcome: succeeded, degraded, failed, cancelled; stopped for a fleet instance whose end is not the execution's)."),
    "wfcrawl_crawl_outcome": (GAUGE, "1 per reason once the execution's outcome is decided; labels: outcome (succeeded, degraded, failed, cancelled), reason (a reason code of wfcrawl.outcome, empty for a plain success)."),
    "wfcrawl_crawl_last_push_time_seconds": (GAUGE, "Unix time of this push (Pushgateway only)."),
    "wfcrawl_downloader_active_requests": (GAUGE, "Requests being downloaded right now."),
    "wfcrawl_scheduler_pending_requests": (GAUGE, "Requests enqueued minus dequeued by this process (summed over processes: the shared queue)."),
    "wfcrawl_phase_queue_requests": (GAUGE, "Requests of a phase waiting in the scheduler of this process (scheduled - duplicates - downloaded)."),
    "wfcrawl_download_latency_seconds": ("histogram", "Time from sending a request to receiving its response headers, by phase."),
}

#: Counters every crawl exports, at 0 until the stat exists: alerts can then
#: tell "no items" from "no data".
ALWAYS: tuple[str, ...] = ("downloader/request_count", "item_scraped_count")


class MetricsStatsCollector(MemoryStatsCollector):
    """Scrapy's MemoryStatsCollector that remembers how each stat is written.

    ``inc_value`` makes a stat a counter, ``set_value``/``max_value``/``min_value``
    a gauge: the fallback mapping needs this to give unknown stats the right
    Prometheus type. The add-on installs it as ``STATS_CLASS`` unless the
    project chose its own.

    Only the public collector API is overridden, with Scrapy's signatures (the
    ``spider`` argument that Scrapy 2.13 passes and 2.14+ deprecates is
    accepted and ignored; 2.14+'s base class warns about it itself).
    """

    def __init__(self, crawler: Any) -> None:
        super().__init__(crawler)
        self.kinds: dict[str, str] = {}

    def inc_value(self, key: str, count: int = 1, start: int = 0, spider: Any = None) -> None:
        self.kinds.setdefault(key, COUNTER)
        super().inc_value(key, count, start)

    def set_value(self, key: str, value: Any, spider: Any = None) -> None:
        self.kinds[key] = GAUGE
        super().set_value(key, value)

    def max_value(self, key: str, value: Any, spider: Any = None) -> None:
        self.kinds[key] = GAUGE
        super().max_value(key, value)

    def min_value(self, key: str, value: Any, spider: Any = None) -> None:
        self.kinds[key] = GAUGE
        super().min_value(key, value)


def auto_name(key: str, kind: str) -> str:
    """The fallback metric name of an unmapped ``wfcrawl/...`` stat."""
    base = "wfcrawl_stat_" + re.sub(r"[^a-z0-9_]+", "_", key[len("wfcrawl/"):].lower()).strip("_")
    return base + "_total" if kind == COUNTER else base


def declared_families(rules: Iterable[Rule] = RULES) -> dict[str, str]:
    """Every metric family name the crawl may export (fallback aside) -> type."""
    out = {r.family: r.kind for r in rules if r.kind != IGNORE}
    out.update({name: kind for name, (kind, _) in EXTRA_FAMILIES.items()})
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class Sample:
    family: str
    kind: str
    labels: tuple[tuple[str, str], ...]
    value: float


class StatsFamilies:
    """Maps a stats dict to samples with the rules; remembers each key's match.

    ``kinds`` tells the fallback whether an unmapped stat is a counter.
    """

    def __init__(self, rules: Iterable[Rule] = RULES, max_auto_series: int = 200) -> None:
        self.rules = tuple(rules)
        self._compiled = [(r, r.compiled()) for r in self.rules]
        self._help = {r.family: r.help for r in self.rules if r.help}
        self._help.update({name: text for name, (_, text) in EXTRA_FAMILIES.items()})
        self._cache: dict[str, tuple[Rule, tuple[tuple[str, str], ...]] | None] = {}
        self.max_auto_series = max_auto_series
        self.auto_dropped = 0

    def help(self, family: str) -> str:
        return self._help.get(family, "")

    def _match(self, key: str) -> tuple[Rule, tuple[tuple[str, str], ...]] | None:
        if key in self._cache:
            return self._cache[key]
        found = None
        for rule, pattern in self._compiled:
            m = pattern.fullmatch(key)
            if m:
                labels = {**rule.labels, **{k: v for k, v in m.groupdict().items() if v is not None}}
                found = (rule, tuple(sorted(labels.items())))
                break
        self._cache[key] = found
        return found

    def samples(self, stats: Mapping[str, Any], kinds: Mapping[str, str] | None) -> Iterator[Sample]:
        """One sample per mapped stat (identical label sets summed by the caller)."""
        auto = 0
        self.auto_dropped = 0
        for key in ALWAYS:
            if key not in stats:
                match = self._match(key)
                assert match is not None
                yield Sample(match[0].family, match[0].kind, match[1], 0)
        for key, value in stats.items():
            if not _number(value):
                continue
            match = self._match(key)
            if match is not None:
                rule, labels = match
                if rule.kind != IGNORE:
                    yield Sample(rule.family, rule.kind, labels, value)
                continue
            if not key.startswith("wfcrawl/"):
                continue
            if auto >= self.max_auto_series:
                # Someone put an unbounded part into stat keys: keep the exporter bounded.
                self.auto_dropped += 1
                continue
            auto += 1
            kind = (kinds or {}).get(key, GAUGE)
            yield Sample(auto_name(key, kind), kind, (), value)


def build_families(
    samples: Iterable[Sample], common: Mapping[str, str], help_of: Callable[[str], str]
) -> list[Any]:
    """prometheus_client metric families from samples; ``common`` labels on all."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    grouped: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    kinds: dict[str, str] = {}
    for s in samples:
        series = grouped.setdefault(s.family, {})
        series[s.labels] = series.get(s.labels, 0) + s.value  # same labels from two keys: one series
        kinds[s.family] = s.kind
    families = []
    for name, series in grouped.items():
        label_names = sorted({k for labels in series for k, _ in labels})
        cls = CounterMetricFamily if kinds[name] == COUNTER else GaugeMetricFamily
        family = cls(name, help_of(name) or name, labels=[*common, *label_names])
        for labels, value in series.items():
            given = dict(labels)
            family.add_metric([*common.values(), *(given.get(k, "") for k in label_names)], value)
        families.append(family)
    return families
