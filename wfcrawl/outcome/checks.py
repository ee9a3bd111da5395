"""The checks :func:`decide` runs: how the crawl ended, then its final stats against
the workflow's expectations (and the defaults: pages, items, nodes that never matched)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from wfcrawl.outcome.model import (
    CANCELLED,
    COMPLETED_REASONS,
    DEGRADED,
    ERROR_RATE_REASON,
    EXIT_INVALID,
    FAILED,
    SPILL_STATS,
    SUCCEEDED,
    Ending,
    Outcome,
    Reason,
)
from wfcrawl.workflow.stats import filled_stat, node_stat

if TYPE_CHECKING:
    from wfcrawl.workflow.plan import Expectations


def _int(stats: Mapping[str, Any], key: str) -> int:
    value = stats.get(key, 0)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _ending_reasons(ending: Ending, stats: Mapping[str, Any]) -> tuple[str, list[Reason]] | None:
    """The outcome an ending decides by itself (the crawl did not run to its end), or None."""
    reason = ending.finish_reason
    if ending.stopped_by == "cancelled" or reason == "cancelled":
        return CANCELLED, [Reason("cancelled", "cancelled by an operator")]
    out: list[Reason] = []
    # A stop that came after the crawl ended on its own (it was exiting): the work is done.
    late = reason in COMPLETED_REASONS
    if ending.stopped_by == "timeout" and not late:
        out.append(Reason("timed_out", "stopped by the launcher after WFCRAWL_LAUNCHER_CRAWL_TIMEOUT"))
    elif ending.stopped_by is not None and not late:
        out.append(Reason("interrupted", f"stopped by the launcher ({ending.stopped_by})",
                          {"stopped_by": ending.stopped_by}))
    if ending.killed and not late:
        out.append(Reason("killed", "killed (SIGKILL): it did not stop within WFCRAWL_LAUNCHER_KILL_TIMEOUT of SIGTERM"))
    if out:
        return FAILED, out
    if reason is None:
        if ending.exit_status == EXIT_INVALID:
            return FAILED, [Reason("did_not_start", "the crawl did not start: invalid document or setting "
                                   "(exit status 2; the log says which)")]
        status = "" if ending.exit_status is None else f" (exit status {ending.exit_status})"
        return FAILED, [Reason("crashed", f"the crawl ended without final stats{status}: it died, or could not start")]
    if reason == "shutdown":
        by = ending.signal or "a signal"
        return FAILED, [Reason("interrupted", f"interrupted by {by} before the crawl ended", {"signal": ending.signal})]
    if reason == "closespider_errorcount":
        return FAILED, [Reason("error_count_above_limit", "closed after CLOSESPIDER_ERRORCOUNT errors",
                               {"errors": _int(stats, "log_count/ERROR")})]
    if reason == "wfcrawl_executions_unavailable":
        return FAILED, [Reason("storage_unavailable", "the execution could not be recorded in PostgreSQL")]
    if reason.startswith("redis_"):
        return FAILED, [Reason("distributed_state_lost", f"the shared crawl state failed ({reason})",
                               {"finish_reason": reason})]
    if reason not in COMPLETED_REASONS and reason != ERROR_RATE_REASON:
        return FAILED, [Reason("closed_early", f"the crawl closed early ({reason})", {"finish_reason": reason})]
    return None


def pages_of(stats: Mapping[str, Any], phases: Iterable[str]) -> int:
    """Pages handled: per phase for a workflow, else responses other than robots.txt."""
    phases = list(phases)
    if phases:
        return sum(_int(stats, f"wfcrawl/pages/{p}") for p in phases)
    return _int(stats, "response_received_count") - _int(stats, "robotstxt/response_count")


def error_rate(stats: Mapping[str, Any], phases: Iterable[str]) -> tuple[float, int, int]:
    """(failed / (pages + failed), failed, pages + failed)."""
    failed = _int(stats, "wfcrawl/pages/failed")
    total = pages_of(stats, phases) + failed
    return (failed / total if total else 0.0), failed, total


def _percent(value: float) -> str:
    return f"{value * 100:.1f}".rstrip("0").rstrip(".") + "%"


#: (status, reason) pairs, in the order the checks found them.
Found = list[tuple[str, Reason]]


def _stats_reasons(stats: Mapping[str, Any], expect: Expectations | None, share: bool) -> Found:
    """(status, reason) of every check the final stats fail. ``share``: the stats are one
    fleet instance's share of the crawl, so counts are not judged (ratios are)."""
    phases = list(dict.fromkeys(p for p, _ in expect.nodes)) if expect is not None else []
    out = _spill_reasons(stats)
    if not share:
        nothing = _nothing_crawled(stats, pages_of(stats, phases))
        if nothing:  # nothing else was crawled: the other checks would only repeat it
            return out + nothing
    if expect is None:
        return out
    out += _item_reasons(stats, expect, share)
    out += _error_rate_reasons(stats, expect, phases)
    out += _phase_reasons(stats, expect, share)
    if not share:
        out += _node_reasons(stats, expect)
    return out


def _spill_reasons(stats: Mapping[str, Any]) -> Found:
    out: Found = []
    for key in SPILL_STATS:
        spilled = _int(stats, key)
        if spilled:
            store = key.split("/")[1]
            out.append((FAILED, Reason("storage_unavailable", f"{store} stayed unavailable: {spilled} "
                                       f"{key.rsplit('/', 1)[-1]} written to spill files instead (wfcrawl spill load)",
                                       {"store": store, "spilled": spilled})))
    return out


def _nothing_crawled(stats: Mapping[str, Any], pages: int) -> Found:
    """Every start request failed, or no page was fetched (empty: something was crawled)."""
    starts_failed = _int(stats, "wfcrawl/start_requests/failed")
    if starts_failed and not _int(stats, "wfcrawl/start_requests/fetched"):
        why = ", ".join(f"{k.rsplit('/', 1)[-1]} {v}" for k, v in sorted(stats.items())
                        if k.startswith("wfcrawl/pages/failed/") and isinstance(v, int))
        return [(FAILED, Reason("all_start_requests_failed",
                                f"all {starts_failed} start request(s) failed ({why or 'no response'})",
                                {"failed": starts_failed}))]
    if pages == 0:
        return [(FAILED, Reason("no_pages", "no page was fetched"))]
    return []


def _item_reasons(stats: Mapping[str, Any], expect: Expectations, share: bool) -> Found:
    out: Found = []
    # Items of any type (a script node's too): "no item at all"; per type, expect.items says it.
    produced = sum(v for k, v in stats.items() if k.startswith("wfcrawl/items/") and k.count("/") == 2
                   and not k.endswith("/dropped") and isinstance(v, int))
    if not share and expect.item_types and not produced:
        out.append((FAILED, Reason("no_items", f"no item was produced (item types: {', '.join(expect.item_types)})",
                                   {"item_types": list(expect.item_types)})))
    for item_type, want in expect.items.items():
        count = _int(stats, f"wfcrawl/items/{item_type}")
        if not share and want.min_count is not None and count < want.min_count:
            out.append((expect.on_unmet, Reason("items_below_expectation",
                                                f"{count} {item_type} item(s), expected at least {want.min_count}",
                                                {"item_type": item_type, "expected": want.min_count, "actual": count})))
        for name, rate in want.fill_rates.items():
            if not count:
                continue
            actual = _int(stats, filled_stat(item_type, name)) / count
            if actual < rate:
                out.append((expect.on_unmet, Reason(
                    "field_fill_rate_below_expectation",
                    f"field {name} of {item_type} filled in {_percent(actual)} of {count} item(s), "
                    f"expected at least {_percent(rate)}",
                    {"item_type": item_type, "field": name, "expected": rate, "actual": round(actual, 4)})))
    return out


def _error_rate_reasons(stats: Mapping[str, Any], expect: Expectations, phases: list[str]) -> Found:
    if expect.max_error_rate is None:
        return []
    rate_now, failed, total = error_rate(stats, phases)
    if rate_now <= expect.max_error_rate:
        return []
    return [(expect.on_unmet, Reason("error_rate_above_limit",
                                     f"{_percent(rate_now)} of pages failed ({failed} of {total}), "
                                     f"limit {_percent(expect.max_error_rate)}",
                                     {"expected": expect.max_error_rate, "actual": round(rate_now, 4),
                                      "failed": failed, "pages": total}))]


def _phase_reasons(stats: Mapping[str, Any], expect: Expectations, share: bool) -> Found:
    out: Found = []
    for phase, want_phase in expect.phases.items():
        count = _int(stats, f"wfcrawl/pages/{phase}")
        if not share and want_phase.min_pages is not None and count < want_phase.min_pages:
            out.append((expect.on_unmet, Reason(
                "phase_pages_below_expectation",
                f"phase {phase} handled {count} page(s), expected at least {want_phase.min_pages}",
                {"phase": phase, "expected": want_phase.min_pages, "actual": count})))
    return out


def _node_reasons(stats: Mapping[str, Any], expect: Expectations) -> Found:
    """Nodes that matched nothing on any page (a broken selector): degraded, unless optional."""
    out: Found = []
    for phase, label in expect.nodes:
        optional = expect.phases.get(phase)
        if optional is not None and label in optional.optional_nodes:
            continue
        missed = _int(stats, node_stat("nomatch", phase, label))
        if missed and not _int(stats, node_stat("matched", phase, label)):
            out.append((DEGRADED, Reason("node_never_matched",
                                         f"node {label} of phase {phase} matched nothing on any of its "
                                         f"{missed} page(s)", {"phase": phase, "node": label, "pages": missed})))
    return out


def decide(stats: Mapping[str, Any], expect: Expectations | None, ending: Ending, *,
           share: bool = False) -> Outcome:
    """The outcome of an execution from its final stats, the workflow's expectations
    (None: a spider that runs no workflow) and how it ended.

    ``share``: the stats are one fleet instance's part of a crawl whose whole stats are
    not known (a distributed crawl without ``DATABASE_URL``): count checks are skipped.
    """
    decided = _ending_reasons(ending, stats)
    if decided is not None:
        return Outcome(decided[0], tuple(decided[1]))
    found = _stats_reasons(stats, expect, share)
    if ending.finish_reason == ERROR_RATE_REASON and "error_rate_above_limit" not in [r.code for _, r in found]:
        found.insert(0, (FAILED, Reason("error_rate_above_limit", "closed early: the error rate went over the limit")))
    statuses = {s for s, _ in found}
    status = FAILED if FAILED in statuses else DEGRADED if DEGRADED in statuses else SUCCEEDED
    return Outcome(status, tuple(r for _, r in found))
