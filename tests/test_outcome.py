"""The outcome model: wfcrawl.outcome.decide (pure), the expect: block, the status lifecycle."""

from __future__ import annotations

import asyncio
import random
import textwrap
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from scrapy import Spider
from scrapy.utils.test import get_crawler
from twisted.internet import defer

from tests.conftest import problems
from tests.launcher_support import execution_store, pg_schema, pg_store  # noqa: F401  (fixtures)
from wfcrawl.observability import executions
from wfcrawl.outcome import (
    Ending,
    Outcome,
    Reason,
    aggregate,
    decide,
    ends_execution,
    last_live,
    normalize_status,
    pull_acks,
    push_status,
)
from wfcrawl.settings.defaults import DEFAULTS
from wfcrawl.storage.executions import Execution, InstanceRecord
from wfcrawl.workflow import load_text
from wfcrawl.workflow.plan import Expectations

SHOP = """\
name: shop
start_urls: [http://shop.example/]
expect: EXPECT
phases:
  listing:
    nodes:
      - {type: extract_links, css: a.product, marker: product}
      - {type: extract_links, name: next page, css: a.next, marker: next}
    transitions:
      - {marker: product, to: product}
      - {marker: next, to: listing}
  product:
    nodes:
      - {type: extract, item: product, fields: {name: h1, price: .price}}
"""


def expect(block: str = "{}") -> Expectations:
    return load_text(SHOP.replace("EXPECT", block)).expect


#: A crawl of SHOP that went well: every node matched somewhere.
GOOD: dict[str, Any] = {
    "finish_reason": "finished", "wfcrawl/start_requests/fetched": 1,
    "wfcrawl/pages/listing": 3, "wfcrawl/pages/product": 10, "wfcrawl/items/product": 10,
    "wfcrawl/nodes/matched/listing/extract_links#0": 3,
    "wfcrawl/nodes/matched/listing/next page": 2, "wfcrawl/nodes/nomatch/listing/next page": 1,
    "wfcrawl/nodes/matched/product/extract#0": 10,
    "wfcrawl/fields/filled/product/name": 10, "wfcrawl/fields/filled/product/price": 8,
}
FINISHED = Ending("finished")


def codes(outcome: Outcome) -> tuple[str, list[str]]:
    return outcome.status, outcome.codes


def test_a_good_crawl_succeeded() -> None:
    outcome = decide(GOOD, expect(), FINISHED)
    assert outcome == Outcome("succeeded")
    assert outcome.exit_code() == 0


def test_every_start_request_failed_is_failed_and_says_why() -> None:
    stats = {"finish_reason": "finished", "wfcrawl/start_requests/failed": 2, "wfcrawl/pages/failed": 2,
             "wfcrawl/pages/failed/DownloadConnectionRefusedError": 2}
    outcome = decide(stats, expect(), FINISHED)
    # The root cause only: no_pages, no_items and the nodes that never ran would repeat it.
    assert outcome == Outcome("failed", (Reason(
        "all_start_requests_failed", "all 2 start request(s) failed (DownloadConnectionRefusedError 2)",
        {"failed": 2}),))
    assert outcome.exit_code() == 1


def test_default_checks_without_expect() -> None:
    assert codes(decide({"finish_reason": "finished"}, expect(), FINISHED)) == ("failed", ["no_pages"])
    no_items = {k: v for k, v in GOOD.items() if not k.startswith(("wfcrawl/items/", "wfcrawl/fields/"))}
    no_items["wfcrawl/nodes/nomatch/product/extract#0"] = no_items.pop("wfcrawl/nodes/matched/product/extract#0")
    outcome = decide(no_items, expect(), FINISHED)
    assert outcome.status == "failed"
    assert outcome.reasons_json() == [
        {"code": "no_items", "message": "no item was produced (item types: product)", "item_types": ["product"]},
        {"code": "node_never_matched", "message": "node extract#0 of phase product matched nothing on any of "
         "its 10 page(s)", "phase": "product", "node": "extract#0", "pages": 10},
    ]


def test_items_of_a_type_no_extract_node_declares_are_items_too() -> None:
    # A script node's items: no_items is "no item at all"; per type, expect.items says it.
    stats = {k: v for k, v in GOOD.items() if not k.startswith(("wfcrawl/items/", "wfcrawl/fields/"))}
    assert decide({**stats, "wfcrawl/items/row": 3}, expect(), FINISHED) == Outcome("succeeded")
    assert decide({**stats, "wfcrawl/items/dropped/duplicate/row": 3}, expect(), FINISHED).codes == ["no_items"]


def test_a_node_that_never_matched_degrades_unless_optional() -> None:
    stats = {**GOOD, "wfcrawl/nodes/nomatch/listing/next page": 3}
    del stats["wfcrawl/nodes/matched/listing/next page"]
    outcome = decide(stats, expect(), FINISHED)
    assert outcome == Outcome("degraded", (Reason(
        "node_never_matched", "node next page of phase listing matched nothing on any of its 3 page(s)",
        {"phase": "listing", "node": "next page", "pages": 3}),))
    assert outcome.exit_code() == 3
    assert decide(stats, expect("{phases: {listing: {optional_nodes: [next page]}}}"), FINISHED) == Outcome("succeeded")


def test_expectations_met_and_unmet() -> None:
    block = ("{items: {product: {min_count: 10, fill_rates: {price: 0.8}}}, phases: {listing: {min_pages: 3}},"
             " max_error_rate: 0.1}")
    assert decide({**GOOD, "wfcrawl/pages/failed": 1}, expect(block), FINISHED) == Outcome("succeeded")
    unmet = {**GOOD, "wfcrawl/items/product": 9, "wfcrawl/fields/filled/product/price": 7,
             "wfcrawl/pages/listing": 2, "wfcrawl/pages/failed": 2}
    outcome = decide(unmet, expect(block), FINISHED)
    assert outcome.status == "failed"
    assert outcome.reasons_json() == [
        {"code": "items_below_expectation", "message": "9 product item(s), expected at least 10",
         "item_type": "product", "expected": 10, "actual": 9},
        {"code": "field_fill_rate_below_expectation",
         "message": "field price of product filled in 77.8% of 9 item(s), expected at least 80%",
         "item_type": "product", "field": "price", "expected": 0.8, "actual": 0.7778},
        {"code": "error_rate_above_limit", "message": "14.3% of pages failed (2 of 14), limit 10%",
         "expected": 0.1, "actual": 0.1429, "failed": 2, "pages": 14},
        {"code": "phase_pages_below_expectation", "message": "phase listing handled 2 page(s), expected at least 3",
         "phase": "listing", "expected": 3, "actual": 2},
    ]
    degraded = decide(unmet, expect(block[:-1] + ", on_unmet: degraded}"), FINISHED)
    assert degraded.status == "degraded" and len(degraded.reasons) == 4


@pytest.mark.parametrize(("ending", "status", "reason"), [
    (Ending("shutdown", signal="SIGTERM"), "failed",
     Reason("interrupted", "interrupted by SIGTERM before the crawl ended", {"signal": "SIGTERM"})),
    (Ending("cancelled"), "cancelled", Reason("cancelled", "cancelled by an operator")),
    (Ending("shutdown", stopped_by="cancelled"), "cancelled", Reason("cancelled", "cancelled by an operator")),
    (Ending("shutdown", stopped_by="timeout"), "failed",
     Reason("timed_out", "stopped by the launcher after WFCRAWL_LAUNCHER_CRAWL_TIMEOUT")),
    (Ending("shutdown", stopped_by="launcher_shutdown"), "failed",
     Reason("interrupted", "stopped by the launcher (launcher_shutdown)", {"stopped_by": "launcher_shutdown"})),
    (Ending(None, exit_status=-9), "failed",
     Reason("crashed", "the crawl ended without final stats (exit status -9): it died, or could not start")),
    (Ending("closespider_errorcount"), "failed",
     Reason("error_count_above_limit", "closed after CLOSESPIDER_ERRORCOUNT errors", {"errors": 0})),
    (Ending("memusage_exceeded"), "failed",
     Reason("closed_early", "the crawl closed early (memusage_exceeded)", {"finish_reason": "memusage_exceeded"})),
    (Ending("redis_unavailable"), "failed", Reason(
        "distributed_state_lost", "the shared crawl state failed (redis_unavailable)",
        {"finish_reason": "redis_unavailable"})),
])
def test_endings_that_decide_by_themselves(ending: Ending, status: str, reason: Reason) -> None:
    assert decide(GOOD, expect(), ending) == Outcome(status, (reason,))


def test_killed_after_the_time_out() -> None:
    outcome = decide({}, expect(), Ending(None, stopped_by="timeout", killed=True, exit_status=-9))
    assert codes(outcome) == ("failed", ["timed_out", "killed"])


def test_a_stop_after_the_crawl_ended_on_its_own_changes_nothing() -> None:
    # The launcher's time-out hit a crawl that had closed "finished" and was exiting.
    assert decide(GOOD, expect(), Ending("finished", stopped_by="timeout", exit_status=0)) == Outcome("succeeded")
    assert decide(GOOD, expect(), Ending("finished", stopped_by="cancelled")) == Outcome(
        "cancelled", (Reason("cancelled", "cancelled by an operator"),))


def test_exit_codes() -> None:
    interrupted = decide(GOOD, expect(), Ending("shutdown", signal="SIGINT"))
    assert (interrupted.exit_code(2), interrupted.exit_code(15), interrupted.exit_code()) == (130, 143, 1)
    assert Outcome("cancelled").exit_code() == 4


def test_limits_run_to_their_end_and_spills_fail() -> None:
    assert decide(GOOD, expect(), Ending("closespider_itemcount")) == Outcome("succeeded")
    spilled = decide({**GOOD, "wfcrawl/postgres/items/spilled": 4}, expect(), FINISHED)
    assert spilled.reasons_json() == [{
        "code": "storage_unavailable", "message": "postgres stayed unavailable: 4 spilled written to spill files "
        "instead (wfcrawl spill load)", "store": "postgres", "spilled": 4}]


def test_a_fleet_share_judges_ratios_not_counts() -> None:
    # One instance of a fleet that saw nothing itself: no count check fails on its share.
    share = {"finish_reason": "finished"}
    assert decide(share, expect("{items: {product: {min_count: 5}}}"), FINISHED, share=True) == Outcome("succeeded")
    assert codes(decide({**GOOD, "wfcrawl/pages/failed": 14}, expect("{max_error_rate: 0.5}"), FINISHED,
                        share=True)) == ("failed", ["error_rate_above_limit"])


def test_early_close_on_the_error_rate() -> None:
    stats = {**GOOD, "wfcrawl/pages/failed": 20}
    assert codes(decide(stats, expect("{max_error_rate: 0.5}"), Ending("wfcrawl_error_rate"))) == (
        "failed", ["error_rate_above_limit"])


def test_which_ends_are_the_executions() -> None:
    assert ends_execution(Ending("shutdown"), distributed=False)
    assert not ends_execution(Ending("shutdown"), distributed=True)
    assert not ends_execution(Ending("closespider_itemcount"), distributed=True)
    assert not ends_execution(Ending("redis_unavailable"), distributed=True)
    # The shared state lost ends the execution: no instance can go on, none may start over.
    for reason in ("finished", "closespider_timeout", "cancelled", "redis_state_lost"):
        assert ends_execution(Ending(reason), distributed=True)


def test_the_last_live_instance() -> None:
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    interval = 5.0  # dead after 2 x 5 + 10 = 20 s without an update

    def rec(name: str, status: str, seconds: float) -> InstanceRecord:
        return InstanceRecord("e", name, status, updated_at=t0 + timedelta(seconds=seconds))

    me = rec("me", "closed", 100)
    assert last_live("me", [me], interval)
    assert last_live("me", [me, rec("b", "closed", 99)], interval)
    assert not last_live("me", [me, rec("b", "running", 99)], interval)  # alive: it ends the execution
    assert not last_live("me", [me, rec("b", "running", 80)], interval)  # 20 s: not yet dead
    assert last_live("me", [me, rec("b", "running", 79.9), rec("c", "closed", 10)], interval)
    assert not last_live("me", [rec("b", "running", 0)], interval)  # not recorded: not the last


def test_pubsub_answers_and_old_records() -> None:
    assert [push_status(s) for s in ("succeeded", "degraded", "failed", "cancelled", "finished")] == [
        200, 200, 500, 200, 200]
    assert [pull_acks(s) for s in ("succeeded", "degraded", "failed", "cancelled")] == [True, True, False, True]
    assert normalize_status("finished") == "succeeded"
    assert Execution("x", "w", status="finished").status == "succeeded"


def test_fleet_stats_are_summed() -> None:
    assert aggregate([
        {"wfcrawl/items/a": 2, "request_depth_max": 3, "elapsed_time_seconds": 10.0, "wfcrawl/workflow": "w",
         "wfcrawl/outcome": "succeeded"},
        {"wfcrawl/items/a": 5, "request_depth_max": 2, "elapsed_time_seconds": 12.5, "wfcrawl/workflow": "w"},
    ]) == {"wfcrawl/items/a": 7, "request_depth_max": 3, "elapsed_time_seconds": 12.5, "wfcrawl/workflow": "w"}


def test_outcomes_and_instances_in_every_store(execution_store: Any) -> None:  # noqa: F811
    """The outcome part of the ExecutionStore contract, the same in memory, SQLite and PostgreSQL."""
    store = execution_store
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    store.create(Execution("e", "w", status="running"))
    assert store.record_instance(InstanceRecord("nope", "a")) is None
    seen: list[list[str]] = []

    def conclude(execution: Execution, instances: list[InstanceRecord]) -> dict[str, Any]:
        seen.append(sorted(f"{i.instance}:{i.status}" for i in instances))
        return {"status": "succeeded", "stats": aggregate(i.stats for i in instances)}

    store.record_instance(InstanceRecord("e", "a", started_at=t0, stats={"n": 1}))
    # An instance's later record keeps when it started.
    store.record_instance(InstanceRecord("e", "a", started_at=t0 + timedelta(minutes=5), stats={"n": 1}))
    store.record_instance(InstanceRecord("e", "b", "closed", "finished", t0 + timedelta(minutes=1),
                                         t0 + timedelta(minutes=2), {"n": 2}), conclude)
    assert seen == [["a:running", "b:closed"]]
    # Every record carries when it was last written (the instances' heartbeat).
    assert all(i.updated_at is not None for i in store.instances("e"))
    assert [(i.instance, i.status, i.finish_reason, i.started_at, i.finished_at, i.stats)
            for i in store.instances("e")] == [
        ("a", "running", None, t0, None, {"n": 1}),
        ("b", "closed", "finished", t0 + timedelta(minutes=1), t0 + timedelta(minutes=2), {"n": 2})]
    assert store.instances("nope") == []
    assert (store.get("e").status, store.get("e").stats) == ("succeeded", {"n": 3})
    # Reasons are kept as given (code, message, details).
    never = [{"code": "node_never_matched", "message": "node n of phase p matched nothing on any of its 3 page(s)",
              "phase": "p", "node": "n", "pages": 3}]
    assert store.update("e", status="degraded", reasons=never).reasons == never
    assert [(e.id, e.reasons) for e in store.list(status="degraded")] == [("e", never)]
    store.update("e", status="cancelled")  # a final status may replace a final one ...
    store.update("e", status="failed")  # ... except an operator's cancel
    store.update("e", status="running")
    assert store.get("e").status == "cancelled"
    # A conclusion cannot overwrite a cancel either.
    store.record_instance(InstanceRecord("e", "a", "closed", "cancelled"), conclude)
    assert store.get("e").status == "cancelled"
    # The status of records written before outcomes.
    store.create(Execution("old", "w", status="finished"))
    assert (store.get("old").status, [e.id for e in store.list(status="succeeded")]) == ("succeeded", ["old"])
    with pytest.raises(ValueError, match="unknown status 'finished'"):  # only ever read back, never written
        store.update("old", status="finished")


def test_expect_block_problems() -> None:
    doc = SHOP.replace("expect: EXPECT", textwrap.dedent("""\
        expect:
          items:
            offer: {min_count: 1}
            product: {fill_rates: {colour: 0.5}}
          phases:
            detail: {min_pages: 1}
            listing: {optional_nodes: [next_page]}
          max_error_rate: 1.5
          on_unmet: maybe"""))
    semantic = [
        "5:5: $.expect.items.offer: no extract or script node produces items of type 'offer'",
        "6:28: $.expect.items.product.fill_rates.colour: 'colour' is not a field of 'product' (fields: name, price)",
        "8:13: $.expect.phases.detail: unknown phase 'detail'; phases: listing, product",
        "9:32: $.expect.phases.listing.optional_nodes[0]: phase 'listing' has no node 'next_page'; its nodes: "
        "extract_links#0, next page",
    ]
    # Every problem in one report: the schema's leave out only their own entries.
    assert problems(doc) == [
        *semantic,
        "10:19: $.expect.max_error_rate: must be at most 1; got 1.5",
        "11:13: $.expect.on_unmet: must be one of 'failed', 'degraded'; got 'maybe'",
    ]
    valid = doc.replace("max_error_rate: 1.5", "max_error_rate: 0.5").replace("on_unmet: maybe", "on_unmet: degraded")
    assert problems(valid) == semantic
    # An entry the schema refuses is left out of the semantic checks, the rest is checked.
    assert problems(valid.replace("detail: {min_pages: 1}", "detail: {min_pages: -1}")) == [
        *semantic[:2], "8:25: $.expect.phases.detail.min_pages: must be at least 0; got -1", semantic[3]]
    # A key the schema refuses leaves the node in; a node it refuses is left out, and so is
    # what may only follow from its absence (the items it produced, the labels of its phase).
    node = "{type: extract, item: product, fields: {name: h1, price: .price}}"
    assert problems(valid.replace(node, node[:-1] + ", bogus: 1}")) == [
        *semantic, "22:75: $.phases.product.nodes[0].bogus: unknown key 'bogus'; allowed: fields, item, json_from, "
        "name, rows, when_marker"]
    assert problems(valid.replace(node, node.replace("extract", "extrakt"))) == [
        semantic[2], semantic[3], "22:16: $.phases.product.nodes[0].type: must be one of 'extract_links', "
        "'extract', 'paginate', 'form', 'script'; got 'extrakt'"]


def test_a_fleet_started_at_once_spreads_its_first_stats_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    """No thundering herd: each instance's first update comes at its own point of the first interval."""
    scheduled: list[float] = []
    monkeypatch.setattr(executions, "call_later", lambda delay, *a: scheduled.append(delay) or SimpleNamespace())
    monkeypatch.setattr(executions, "ThreadWorker", lambda name: SimpleNamespace(
        start=lambda: None, call=lambda f, *a: defer.succeed(f(*a))))
    monkeypatch.setattr(executions, "maybe_deferred_to_future", lambda d: d)
    store = SimpleNamespace(ensure_schema=lambda: None, create=lambda execution: (execution, True),
                            record_instance=lambda record: None)
    random.seed(7)
    interval = 30.0
    for _ in range(100):  # a hundred instances of one execution, opened together
        crawler = get_crawler(Spider, settings_dict=dict(DEFAULTS))
        crawler.spider = Spider("fleet", execution_id="e1")
        recorder = executions.ExecutionRecorder(crawler, store, interval)  # type: ignore[arg-type]
        asyncio.run(recorder.spider_opened(crawler.spider))
    assert len(scheduled) == 100 and all(0 <= delay <= interval for delay in scheduled)
    # Spread over the interval, not in step: every tenth of it holds some first updates.
    assert {int(delay // (interval / 10)) for delay in scheduled} == set(range(10))
