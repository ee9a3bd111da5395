"""Fuzz the workflow loader: any text in, located problems (or a plan) out, bounded.

Hypothesis generates documents three ways: YAML/JSON-like token soup (anchors,
aliases, merge keys, tags, flow and block nesting, escapes, surrogates, control
characters, numbers at the edges, the schema's own keys), mutations of the
example workflows (bytes inserted, deleted, duplicated), and raw text. Each is
loaded as ``wfcrawl validate`` loads it (``parse_text`` + ``check_source``); a
finding is anything but a :class:`WorkflowError` or a result: an exception, a
document whose Python memory peak passes ``--peak-mib``.

    .venv/bin/python bench/fuzz_loader.py                 # 2000 documents of each kind
    .venv/bin/python bench/fuzz_loader.py --examples 20000 --json fuzz.json

Prints what it ran and found (the slowest and largest documents too); exits 1
when it found something. ``make fuzz`` runs it; ``make bench`` too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import tracemalloc
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wfcrawl.exceptions import WorkflowError  # noqa: E402
from wfcrawl.workflow import check_source  # noqa: E402
from wfcrawl.workflow.source import parse_text  # noqa: E402

KEYS = ["name", "start_urls", "phases", "nodes", "type", "extract", "extract_links", "fields", "css", "xpath",
        "re", "marker", "to", "transitions", "items", "schema", "$ref", "rate_limit", "delay", "webhooks", "url",
        "render", "paginate", "max_pages", "<<", "user_agent", "when_marker", "rows", "group", "allow"]
TOKENS = [
    "{", "}", "[", "]", ",", ": ", "\n", "\n  ", "\n    ", "- ", "&a ", "&b ", "*a", "*b", "<<: *a", "!!python/name:os.system ",
    "!!binary ", "!!set ", "? ", "---\n", "...\n", "'", '"', "\\u", "\\ud800", "\\x00", "\t", "\ufeff", "\x00", "\ud800",
    "#", "|\n", ">\n", ".inf", ".nan", "1e300", "1.0e+300", "-0", "0x", "9" * 30, "null", "true", "~", "%YAML 1.2\n",
    "re:test(., '(a+)+$')", "(a+)+$", "(?=x)", "\\1", "http://127.0.0.1/", "https://[::1", "file:///etc/passwd",
    "\r\n", "\u202e", "\u0430",
]
EXAMPLES = sorted((ROOT / "workflows").glob("*.yaml"))


def load(text: str) -> str:
    """'ok', 'problems' or 'finding: ...' for one document."""
    try:
        _, problems = check_source(parse_text(text, "fuzz.yaml"))
    except WorkflowError:
        return "problems"
    return "problems" if problems else "ok"


soup = st.lists(st.one_of(st.sampled_from(TOKENS), st.sampled_from(KEYS), st.text(max_size=8)), max_size=200).map("".join)
mutated = st.tuples(
    st.sampled_from([p.read_text() for p in EXAMPLES]),
    st.lists(st.tuples(st.integers(0, 4000), st.sampled_from(["insert", "delete", "repeat"]),
                       st.one_of(st.sampled_from(TOKENS), st.text(max_size=4))), max_size=6),
).map(lambda pair: _mutate(*pair))
raw = st.text(max_size=400)


def _mutate(text: str, edits: list[tuple[int, str, str]]) -> str:
    for at, how, what in edits:
        at %= len(text) + 1
        if how == "insert":
            text = text[:at] + what + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + len(what) + 1:]
        else:
            text = text[:at] + text[at:at + 40] * 3 + text[at:]
    return text


def run(examples: int, peak_limit: int) -> dict[str, Any]:
    report: dict[str, Any] = {"documents": 0, "outcomes": {}, "findings": [], "slowest": [0.0, ""], "largest": [0, ""]}

    def check(text: str) -> None:
        report["documents"] += 1
        tracemalloc.start()
        started = time.perf_counter()
        try:
            outcome = load(text)
        except BaseException as exc:
            outcome = "finding"
            report["findings"].append({"document": text[:2000], "error": "".join(
                traceback.format_exception_only(type(exc), exc)).strip(), "where": traceback.format_exc()[-1500:]})
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if peak > peak_limit:
            report["findings"].append({"document": text[:2000], "error": f"memory peak {peak} bytes"})
        report["outcomes"][outcome] = report["outcomes"].get(outcome, 0) + 1
        if elapsed > report["slowest"][0]:
            report["slowest"] = [round(elapsed, 4), text[:200]]
        if peak > report["largest"][0]:
            report["largest"] = [peak, text[:200]]

    for name, strategy in (("soup", soup), ("mutated", mutated), ("raw", raw)):
        runner = settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                          suppress_health_check=list(HealthCheck))(given(strategy)(check))
        started = time.perf_counter()
        runner()
        report[f"seconds/{name}"] = round(time.perf_counter() - started, 1)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="documents per kind (3 kinds)")
    parser.add_argument("--peak-mib", type=int, default=32, help="a document needing more Python memory is a finding")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()
    report = run(args.examples, args.peak_mib << 20)
    summary = {k: v for k, v in report.items() if k != "findings"}
    print(json.dumps({**summary, "findings": len(report["findings"])}, indent=2, ensure_ascii=True))
    for finding in report["findings"][:10]:
        print("FINDING:", finding["error"], "\n  document:", json.dumps(finding["document"][:300]),
              "\n", finding.get("where", ""))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=True))
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
