"""What a person sees: ``wfcrawl demo`` and ``wfcrawl run`` print one summary, no traceback,
no deprecation warning, no stats dump unless asked; with the network unreachable (a network
namespace with only loopback) the Public Suffix List comes from tldextract's snapshot, and a
DNS failure is one line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_service
from tests.mockserver import MockServer
from wfcrawl.addon import WfcrawlAddon


def offline(*argv: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a network namespace of its own with only loopback (up)."""
    require_service("unshare", shutil.which("unshare") is not None and shutil.which("ip") is not None,
                    "util-linux and iproute2 (user namespaces allowed)")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    require_service("network namespaces", probe.returncode == 0, probe.stderr.strip())
    script = 'ip link set lo up && exec "$@"'
    return subprocess.run(["unshare", "-rn", "sh", "-c", script, "sh", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def lines(stderr: str) -> list[str]:
    return [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", line) for line in stderr.splitlines()]


def test_demo_offline_one_summary_no_traceback(tmp_path: Path) -> None:
    # An empty tldextract cache: without wfcrawl's setting it must fetch the list (and cannot).
    env = {**os.environ, "TLDEXTRACT_CACHE": str(tmp_path / "tldextract"), "PYTHONWARNINGS": "default"}
    out = tmp_path / "demo.jsonl"
    demo = (sys.executable, "-m", "wfcrawl.cli", "demo", "--out", str(out))
    proc = offline(*demo, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    log = lines(proc.stderr)
    assert [line for line in log if "Workflow demo" in line] == [
        "[wfcrawl.observability.summary] INFO: Workflow demo SUCCEEDED (finished): 43 pages, 72 items, 0 failed pages"]
    assert log[-1] == f"72 items went to: {out} (jsonlines)"
    assert len(proc.stdout.splitlines()) + len(log) == 18  # the whole console
    # The same demo with tldextract allowed to fetch: the network really is unreachable, and
    # the cookie of the demo shop really makes it look the list up (the tracebacks).
    fetching = offline(*demo, env={**env, "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS":
                                   "https://publicsuffix.org/list/public_suffix_list.dat"})
    assert fetching.returncode == 0
    assert "Traceback" in fetching.stderr and "publicsuffix.org" in fetching.stderr


def test_dns_failure_is_one_line_and_the_crawl_failed(tmp_path: Path) -> None:
    workflow = tmp_path / "nowhere.yaml"
    workflow.write_text("name: nowhere\nstart_urls: [http://shop.example.invalid/]\n"
                        "phases: {home: {nodes: [{type: extract, item: page, fields: {title: title}}]}}\n")
    proc = offline(sys.executable, "-m", "wfcrawl.cli", "run", str(workflow), "-s", "RETRY_TIMES=0",
                   env={**os.environ, "TLDEXTRACT_CACHE": str(tmp_path / "tldextract")})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in lines(proc.stderr) if " ERROR: " in line]
    assert [re.sub(r": .*", "", e.split(" ERROR: ", 1)[1]) for e in errors] == [
        "Gave up retrying <GET http://shop.example.invalid/robots.txt> (failed 1 times)",
        "Gave up retrying <GET http://shop.example.invalid/> (failed 1 times)",
    ]
    assert re.search(r"  all_start_requests_failed: all 1 start request\(s\) failed \(\w+ 1\)", proc.stderr)


def test_run_prints_the_summary_once_and_the_stats_dump_only_when_asked(tmp_path: Path, server: MockServer) -> None:
    out = tmp_path / "items.jsonl"
    run = (sys.executable, "-m", "wfcrawl.cli", "run", "workflows/shop.yaml", "--base-url", server.url,
           "-O", f"{out}:jsonlines")
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # shop.yaml sets a delay: Scrapy 2.19 would warn about RANDOMIZE_DOWNLOAD_DELAY.
    assert "Deprecat" not in proc.stderr and "Traceback" not in proc.stderr
    assert "Dumping Scrapy stats" not in proc.stderr
    log = lines(proc.stderr)
    assert [line for line in log if "] INFO: Workflow shop" in line] == [
        "[wfcrawl.observability.summary] INFO: Workflow shop SUCCEEDED (finished): 14 pages, 9 items, 0 failed pages"]
    summary_end = next(i for i, line in enumerate(log) if line.startswith("9 items went to: "))
    assert log[summary_end] == f"9 items went to: {out} (jsonlines)"
    with_stats = subprocess.run((*run, "--stats"), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert with_stats.returncode == 0 and with_stats.stderr.count("Dumping Scrapy stats") == 1


@pytest.mark.parametrize("setting", ["TELNETCONSOLE_ENABLED"])
def test_safety_settings_are_always_applied(setting: str) -> None:
    from scrapy.settings import Settings

    settings = Settings()
    settings.set(setting, True, priority="project")
    settings.set("REMOTE_CONTROL_ENABLED", True, priority="cmdline")
    WfcrawlAddon().update_settings(settings)
    assert (settings.getbool(setting), settings.getbool("REMOTE_CONTROL_ENABLED")) == (False, False)
