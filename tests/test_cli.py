"""The command line: wfcrawl run/validate/demo, scrapy crawl/validate."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, SCRAPY_HAS_AIOHTTP
from tests.mockserver import MockServer
from wfcrawl.cli import fast_settings
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.spiders.loading import plan_for_crawl

BAD = """\
name: bad
start_urls: [http://127.0.0.1:1/]
phases:
  a:
    nodes:
      - {type: extract_links, css: "a[", marker: x}
    transitions:
      - {marker: x, to: b}
"""


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def test_wfcrawl_validate(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    proc = run(sys.executable, "-m", "wfcrawl.cli", "validate", "workflows/demo.yaml", str(bad))
    assert proc.returncode == 1
    assert proc.stdout == "workflows/demo.yaml: ok\n"
    assert proc.stderr.splitlines() == [
        f"{bad}:6:36: $.phases.a.nodes[0].css: invalid CSS selector 'a[': Expected ident or '*', got <EOF at 2>",
        f"{bad}:8:25: $.phases.a.transitions[0].to: unknown phase 'b'; phases: a",
    ]
    ok = run(sys.executable, "-m", "wfcrawl.cli", "validate", "workflows/demo.yaml")
    assert (ok.returncode, ok.stderr) == (0, "")


def test_scrapy_validate_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    proc = run(sys.executable, "-m", "scrapy", "validate", str(bad))
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 2 and "unknown phase 'b'" in proc.stderr


def test_scrapy_crawl_refuses_invalid_document_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    proc = run(sys.executable, "-m", "scrapy", "crawl", "workflow", "-a", f"workflow={bad}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-2:] == [
        f"{bad}:6:36: $.phases.a.nodes[0].css: invalid CSS selector 'a[': Expected ident or '*', got <EOF at 2>",
        f"{bad}:8:25: $.phases.a.transitions[0].to: unknown phase 'b'; phases: a",
    ]


def test_scrapy_crawl_without_workflow_argument() -> None:
    proc = run(sys.executable, "-m", "scrapy", "crawl", "workflow")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "the workflow spider needs a workflow document: scrapy crawl workflow -a workflow=path/to/workflow.yaml"
    )


def comparable(items_file: Path) -> list[dict[str, Any]]:
    """The items of a run, sorted, with the provenance that does not depend on crawl order:
    a page linked from several pages (a seller) is reached through whichever came first."""
    items = [json.loads(line) for line in items_file.read_text().splitlines()]
    for item in items:
        meta = item.pop("_meta")
        item["_meta"] = {k: meta[k] for k in ("workflow", "execution_id", "url", "phase")}
    return sorted(items, key=lambda i: json.dumps(i, sort_keys=True))


def test_wfcrawl_run_json_document_equals_yaml(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "workflows/shop.yaml").read_text())
    as_json = tmp_path / "shop.json"
    as_json.write_text(json.dumps(document, indent=2))
    outputs = {}
    with MockServer() as server:
        for name, path in (("yaml", "workflows/shop.yaml"), ("json", str(as_json))):
            out = tmp_path / f"{name}.jsonl"
            proc = run(sys.executable, "-m", "wfcrawl.cli", "run", path, "--base-url", server.url,
                       "--execution-id", "same", "-O", f"{out}:jsonlines")
            assert proc.returncode == 0, proc.stderr[-2000:]
            outputs[name] = comparable(out)
    assert len(outputs["yaml"]) == 9
    assert outputs["json"] == outputs["yaml"]


def test_wfcrawl_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    proc = run(sys.executable, "-m", "wfcrawl.cli", "demo", "--workflow", "workflows/demo.yaml", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("demo shop serving at http://127.0.0.1:")
    # The log: the start line and the summary, once (no Scrapy start-up lists, no stats dump).
    log = [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", line) for line in proc.stderr.splitlines()]
    assert log[0].startswith("[wfcrawl.spiders.workflow] INFO: Crawling workflow demo (execution ")
    assert log[1:] == [
        "[wfcrawl.observability.summary] INFO: Workflow demo SUCCEEDED (finished): 43 pages, 72 items, 0 failed pages",
        "pages per phase:",
        "  home            1",
        "  listing         6",
        "  product        36",
        "items per type:",
        "  offer          36",
        "  product        36",
        "scheduled links: 42",
        "extracted links: 42",
        "per phase:",
        "  phase         pages       items    requests  duplicates       queue",
        "  home              1           0           1           0           0",
        "  listing           6          36           6           0           0",
        "  product          36          36          36           0           0",
        f"72 items went to: {out} (jsonlines)",
    ]
    items = [json.loads(line) for line in out.read_text().splitlines()]
    product = next(i for i in items if i["_type"] == "product" and i["sku"] == "BO-001")
    assert {k: v for k, v in product.items() if k != "_meta"} == {
        "name": "Book 1", "sku": "BO-001", "price": 16.01,
        "attributes": {"Colour": "green", "Weight": "200 g"},
        "seller": {"name": "Globex", "rating": 4.1},
        "reviews": [{"author": "user10", "stars": 2}],
        "tags": ["books", "sale"],
        "_type": "product",
    }
    # robots.txt disallows /private/: the demo obeys it.
    assert "private" not in out.read_text()


def test_wfcrawl_run_fast(tmp_path: Path) -> None:
    """--fast: the same items as without, parsed in workers, over the aiohttp handler and uvloop."""
    stats_file = tmp_path / "stats.json"
    outputs = {}
    with MockServer() as server:
        for name, extra in (("plain", []), ("fast", ["--fast", "--parse-workers", "2"])):
            out = tmp_path / f"{name}.jsonl"
            proc = run(sys.executable, "-m", "wfcrawl.cli", "run", "workflows/shop.yaml", "--base-url", server.url,
                       "--execution-id", "same", "-O", f"{out}:jsonlines", *extra,
                       "-s", f"WFCRAWL_STATS_FILE={stats_file}", "-s", "LOG_LEVEL=DEBUG")
            assert proc.returncode == 0, proc.stderr[-2000:]
            outputs[name] = comparable(out)
            stats = json.loads(stats_file.read_text())
            if name == "fast":
                assert stats["wfcrawl/parse_workers/pages"] == 14
                assert "Using asyncio event loop: uvloop.Loop" in proc.stderr
                # Scrapy says so when it loads its aiohttp handler (Scrapy >= 2.19; older: its default one).
                assert ("AiohttpDownloadHandler is experimental" in proc.stderr) == SCRAPY_HAS_AIOHTTP
            else:
                assert "wfcrawl/parse_workers/pages" not in stats
    assert len(outputs["plain"]) == 9
    assert outputs["fast"] == outputs["plain"]


def test_fast_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def as_dict(args: list[str]) -> dict[str, str]:
        assert args[::2] == ["-s"] * (len(args) // 2)
        return dict(a.split("=", 1) for a in args[1::2])

    shop = as_dict(fast_settings("workflows/shop.yaml", 3))
    handlers = {"DOWNLOAD_HANDLERS": json.dumps({"http": "wfcrawl.handlers.aiohttp.AiohttpDownloadHandler",
                                                 "https": "wfcrawl.handlers.aiohttp.AiohttpDownloadHandler"})}
    assert shop == {
        **(handlers if SCRAPY_HAS_AIOHTTP else {}), "ASYNCIO_EVENT_LOOP": "uvloop.Loop", "WFCRAWL_PARSE_WORKERS": "3",
    }
    # A rendering workflow keeps scrapy-playwright's handler and the default loop.
    rendering = tmp_path / "rendered.yaml"
    rendering.write_text("""\
name: rendered
start_urls: [http://127.0.0.1:1/js/onload.html]
phases:
  page:
    render: {wait_for: "#items li"}
    nodes:
      - {type: extract, item: page, fields: {title: title}}
""")
    assert as_dict(fast_settings(str(rendering), 1)) == {"WFCRAWL_PARSE_WORKERS": "1"}
    # Without the fast extra: a clear error (wfcrawl run exits 2 with it).
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else find_spec(name, *a))
    with pytest.raises(ConfigurationError, match=re.escape("--fast needs uvloop: pip install 'wfcrawl[fast]'")):
        fast_settings("workflows/shop.yaml")


def test_the_document_is_compiled_once_per_crawl(tmp_path: Path) -> None:
    """`scrapy crawl` checks the document, then the spider loads it: one compile."""
    from scrapy.settings import Settings

    path = tmp_path / "shop.yaml"
    path.write_text((ROOT / "workflows/shop.yaml").read_text())
    settings = Settings()
    first = plan_for_crawl(settings, {"workflow": str(path)})
    assert plan_for_crawl(settings, {"workflow": str(path)}) is first
    # Another base URL, or an edited file: compiled anew.
    assert plan_for_crawl(settings, {"workflow": str(path), "base_url": "http://other.test"}) is not first
    path.write_text(path.read_text().replace("name: shop", "name: shop2", 1))
    assert plan_for_crawl(settings, {"workflow": str(path)}).name == "shop2"
