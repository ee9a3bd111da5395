"""What the execution page shows, computed from an execution's stats (no web types here).

Pure functions over the stats dict the stores keep (``wfcrawl/pages/<phase>``,
``wfcrawl/phases/<phase>/...``, drop and failure counters by reason), so that
they are easy to test and the templates only lay them out.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wfcrawl.launcher.samples import SAMPLES_STAT, parse_samples
from wfcrawl.observability.progress import phase_counts, phases_of
from wfcrawl.storage.executions import Execution
from wfcrawl.workflow.plan import Expectations
from wfcrawl.workflow.stats import filled_stat

#: Stats prefixes of drops and failures, by what they drop (reason = the rest of the key).
DROPS = (
    ("links dropped", "wfcrawl/links/dropped/"),
    ("items dropped", "wfcrawl/items/dropped/"),
    ("invalid items", "wfcrawl/validation/invalid/"),
    ("forms dropped", "wfcrawl/forms/dropped/"),
    ("requests refused (SSRF)", "wfcrawl/ssrf/refused/"),
    ("requests filtered", "wfcrawl/scheduler/filtered/"),
    ("offsite requests", "offsite/"),
)
ERRORS = (
    ("failed pages", "wfcrawl/pages/failed/"),
    ("download errors", "downloader/exception_type_count/"),
    ("spider exceptions", "spider_exceptions/"),
    ("log lines", "log_count/"),
)


def number(stats: Mapping[str, Any], key: str) -> int:
    value = stats.get(key, 0)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def totals(stats: Mapping[str, Any]) -> dict[str, int]:
    """The list's columns: pages, items, errors."""
    return {"pages": number(stats, "response_received_count") - number(stats, "robotstxt/response_count"),
            "items": number(stats, "item_scraped_count"),
            "errors": number(stats, "log_count/ERROR") + number(stats, "wfcrawl/pages/failed")}


@dataclass
class PhaseRow:
    phase: str
    pages: int
    items: int
    requests: int
    duplicates: int
    queue: int
    rate: float  # pages/s over the crawl's time so far


def phase_rows(stats: Mapping[str, Any], seconds: float) -> list[PhaseRow]:
    rows = []
    for phase in phases_of(stats):
        c = phase_counts(stats, phase)
        rate = c["pages"] / seconds if seconds > 0 else 0.0
        rows.append(PhaseRow(phase, c["pages"], c["items"], c["requests"], c["duplicates"], c["queue"], round(rate, 2)))
    return rows


def by_reason(stats: Mapping[str, Any], groups: tuple[tuple[str, str], ...]) -> list[tuple[str, str, int]]:
    """(group, reason, count) of every counter under the groups' prefixes, largest first per group."""
    out = []
    for label, prefix in groups:
        found = sorted(((k[len(prefix):], number(stats, k)) for k in stats
                        if k.startswith(prefix) and number(stats, k) and k != prefix.rstrip("/")),
                       key=lambda kv: (-kv[1], kv[0]))
        if prefix == "log_count/":
            found = [(r, n) for r, n in found if r in ("ERROR", "CRITICAL", "WARNING")]
        out += [(label, reason, n) for reason, n in found]
    return out


#: What falls out of the funnel between a step and the next (group, stats prefix).
FUNNEL_DROPS = {
    # links found that never became requests
    "links": (("links dropped", "wfcrawl/links/dropped/"), ("forms dropped", "wfcrawl/forms/dropped/"),
              ("refused (SSRF)", "wfcrawl/ssrf/refused/"), ("offsite", "offsite/"),
              ("filtered", "wfcrawl/scheduler/filtered/")),
    # requests that got no response
    "requests": (("download errors", "downloader/exception_type_count/"),),
    # responses that gave no page to the workflow
    "responses": (("failed pages", "wfcrawl/pages/failed/"),),
    # items extracted that were not stored
    "items": (("items dropped", "wfcrawl/items/dropped/"), ("invalid items", "wfcrawl/validation/invalid/")),
}


@dataclass
class Funnel:
    """links -> requests -> responses by status -> items -> stored, and what fell out after each step."""

    links: int
    requests: int
    responses: list[tuple[str, int]]
    items: int
    stored: int
    phases: list[PhaseRow] = field(default_factory=list)
    #: step name ("links", "requests", "responses", "items") -> (group, reason, count) lost after it
    lost: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)


def funnel(stats: Mapping[str, Any], seconds: float) -> Funnel:
    prefix = "downloader/response_status_count/"
    responses = sorted((k[len(prefix):], number(stats, k)) for k in stats if k.startswith(prefix))
    items = sum(number(stats, k) for k in stats
                if k.startswith("wfcrawl/items/") and k.count("/") == 2 and not k.endswith("/dropped"))
    lost = {step: by_reason(stats, groups) for step, groups in FUNNEL_DROPS.items()}
    return Funnel(number(stats, "wfcrawl/links/extracted"), number(stats, "downloader/request_count"), responses,
                  items, number(stats, "item_scraped_count"), phase_rows(stats, seconds), lost)


@dataclass
class Check:
    what: str
    expected: str
    actual: str
    ok: bool


def expectation_checks(stats: Mapping[str, Any], expect: Expectations | None) -> list[Check]:
    """Each ``expect:`` entry of the workflow, against these stats."""
    if expect is None:
        return []
    out = []
    for item_type, want in expect.items.items():
        count = number(stats, f"wfcrawl/items/{item_type}")
        if want.min_count is not None:
            out.append(Check(f"{item_type} items", f"≥ {want.min_count}", str(count), count >= want.min_count))
        for name, rate in want.fill_rates.items():
            actual = number(stats, filled_stat(item_type, name)) / count if count else 0.0
            out.append(Check(f"{item_type}.{name} filled", f"≥ {rate:.0%}", f"{actual:.0%}", actual >= rate))
    if expect.max_error_rate is not None:
        failed = number(stats, "wfcrawl/pages/failed")
        total = totals(stats)["pages"] + failed
        rate_now = failed / total if total else 0.0
        out.append(Check("error rate", f"≤ {expect.max_error_rate:.0%}", f"{rate_now:.1%}",
                         rate_now <= expect.max_error_rate))
    for phase, want_phase in expect.phases.items():
        if want_phase.min_pages is not None:
            pages = number(stats, f"wfcrawl/pages/{phase}")
            out.append(Check(f"phase {phase} pages", f"≥ {want_phase.min_pages}", str(pages),
                             pages >= want_phase.min_pages))
    return out


def fill_rates(stats: Mapping[str, Any]) -> dict[str, float]:
    """``type.field`` -> the fraction of the type's items in which the field is filled."""
    prefix = "wfcrawl/fields/filled/"
    out = {}
    for key in stats:
        if key.startswith(prefix) and key.count("/") == 4:
            item_type, name = key[len(prefix):].split("/", 1)
            count = number(stats, f"wfcrawl/items/{item_type}")
            if count:
                out[f"{item_type}.{name}"] = number(stats, key) / count
    return dict(sorted(out.items()))


@dataclass
class Compared:
    what: str
    now: str
    before: str
    change: str  # "+3", "-12%", ""


def compare(stats: Mapping[str, Any], before: Mapping[str, Any], now_f: dict[str, float],
            old_f: dict[str, float]) -> list[Compared]:
    """This execution against the previous one of the workflow: pages, items, errors, and
    the fill rates given (``type.field`` -> fraction)."""
    out = []
    now_t, old_t = totals(stats), totals(before)
    for name in ("pages", "items", "errors"):
        delta = now_t[name] - old_t[name]
        out.append(Compared(name, str(now_t[name]), str(old_t[name]), f"{delta:+d}" if delta else "="))
    for name in sorted(now_f.keys() | old_f.keys()):
        a, b = now_f.get(name), old_f.get(name)
        change = "" if a is None or b is None else ("=" if round(a - b, 3) == 0 else f"{(a - b) * 100:+.0f} pts")
        out.append(Compared(f"{name} filled", "" if a is None else f"{a:.0%}", "" if b is None else f"{b:.0%}",
                            change))
    return out


def samples_of(execution: Execution, live: list[tuple[float, int, int]] | None) -> list[tuple[float, int, int]]:
    return live if live else parse_samples(execution.stats.get(SAMPLES_STAT))


def chart(samples: list[tuple[float, int, int]], width: int = 360, height: int = 150) -> dict[str, Any] | None:
    """pages/s between samples, as the points of an SVG polyline (None: fewer than two samples)."""
    points = [(0.0, 0, 0), *samples] if samples and samples[0][0] > 0 else list(samples)
    if len(points) < 2:
        return None
    rates = []
    for (t0, p0, _), (t1, p1, _) in itertools.pairwise(points):
        if t1 > t0:
            rates.append((t1, max(0.0, (p1 - p0) / (t1 - t0))))
    if len(rates) < 2:  # one rate is no curve
        return None
    end = rates[-1][0] or 1.0
    top = max(r for _, r in rates) or 1.0
    pad = 4
    xy = [(pad + t / end * (width - 2 * pad), height - pad - r / top * (height - 2 * pad)) for t, r in rates]
    xy.insert(0, (pad, xy[0][1]))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    area = f"{pad},{height - pad} {line} {xy[-1][0]:.1f},{height - pad}"
    return {"width": width, "height": height, "line": line, "area": area, "peak": round(top, 1),
            "seconds": round(end), "last": round(rates[-1][1], 1), "samples": len(samples)}
