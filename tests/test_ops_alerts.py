"""The alert rules and the dashboard only name metrics wfcrawl really exports."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from wfcrawl.observability.statscollector import declared_families

ALERTS = ROOT / "docker/prometheus/alerts.yml"
DASHBOARD = ROOT / "docker/grafana/dashboards/wfcrawl.json"

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
#: Aggregations may be followed by `by (...)` instead of their argument.
_AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values"}
#: Exported by prometheus_client's ProcessCollector (WFCRAWL_METRICS_PROCESS).
_PROCESS = {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, keywords, labels or strings)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)  # label lists
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = m.group(0)
        following = text[m.end():].lstrip()
        if following.startswith("(") or name in _KEYWORDS | _AGGREGATIONS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        if text[max(0, m.start() - 1)].isdigit():  # 1e5, 0x..., durations
            continue
        names.add(name)
    return names


def exported(name: str) -> bool:
    declared = declared_families()
    if name in _PROCESS:
        return True
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    return name in declared or (base in declared and declared[base] == "histogram")


def test_the_name_extractor_sees_metrics_and_nothing_else() -> None:
    expr = ('sum by (workflow, le) (rate(a_total{x=~"b|c", y="d_total"}[5m])) / on (workflow) '
            "group_left max(b_seconds offset 1h) > 0.2 and deriv((sum(c))[1h:5m]) > 1e5")
    assert metric_names(expr) == {"a_total", "b_seconds", "c"}


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_cover_the_required_cases() -> None:
    names = {rule["alert"] for rule in _alert_rules()}
    assert {
        "WfcrawlCrawlFailed", "WfcrawlCrawlDegraded", "WfcrawlCrawlStalledNoItems", "WfcrawlCrawlNoProgress", "WfcrawlErrorRateHigh",
        "WfcrawlQueueGrowingWithoutBound", "WfcrawlStorageWritesRetrying",
    } <= names
    for rule in _alert_rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_expression_names_exported_metrics(rule: dict[str, Any]) -> None:
    names = metric_names(rule["expr"])
    assert names, rule["expr"]
    assert sorted(n for n in names if not exported(n)) == []


def test_every_dashboard_query_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    variable = re.fullmatch(r"label_values\((\w+), workflow\)", dashboard["templating"]["list"][0]["query"]["query"])
    assert variable is not None
    exprs.append(variable.group(1))
    assert len(exprs) > 20
    unknown = sorted({n for e in exprs for n in metric_names(e) if not exported(n)})
    assert unknown == []
    # The required views are there.
    everything = " ".join(exprs)
    for needed in ("wfcrawl_requests_total", "wfcrawl_responses_total", "wfcrawl_items_total",
                   "wfcrawl_items_dropped_total", "wfcrawl_links_dropped_total", "wfcrawl_download_latency_seconds_bucket",
                   "wfcrawl_redis_leases", "wfcrawl_ratelimit_waits_total", "wfcrawl_component_batch_items_total",
                   "wfcrawl_component_retries_total"):
        assert needed in everything


def test_a_misspelled_metric_would_be_caught() -> None:
    assert not exported("wfcrawl_item_total")
    assert not exported("wfcrawl_download_latency_bucket")
    assert exported("wfcrawl_download_latency_seconds_bucket")
    assert exported("wfcrawl_items_total") and exported("wfcrawl_crawl_running")


def test_the_outcome_alerts_fire_on_failed_and_degraded() -> None:
    rules = {rule["alert"]: rule["expr"] for rule in _alert_rules()}
    assert rules["WfcrawlCrawlFailed"] == 'max by (workflow, instance, reason) (wfcrawl_crawl_outcome{outcome="failed"}) == 1'
    assert rules["WfcrawlCrawlDegraded"] == (
        'max by (workflow, instance, reason) (wfcrawl_crawl_outcome{outcome="degraded"}) == 1')
