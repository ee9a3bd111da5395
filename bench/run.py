#!/usr/bin/env python3
"""The wfcrawl benchmark harness.

Generates the benchmark shop (cached in ``bench/.cache/sites`` by product count,
seed and generator version), serves it with nginx and crawls it with

  (a) wfcrawl's WorkflowSpider running ``bench/shop.yaml``,
  (b) the equivalent hand-written Scrapy spider (``bench/handwritten.py``),
  (c) Crawlee for Python's ParselCrawler (``bench/crawlee_run.py``),

each as a child process, runs interleaved (a, b, c, a, b, c, ...).  For every run
it measures wall time, pages fetched (from nginx's access log), items, CPU%
(child user+sys time / wall time, its reaped children included: parse workers) and
peak RSS (the child's ``ru_maxrss`` from ``os.wait4``, or the peak of the RSS summed
over its process group, sampled every 0.2 s, when that is higher: a crawler with
worker processes), and checks that the run produced exactly one correct item for
every product (the generator's catalog is the ground truth); any miss fails the
benchmark.  Then it checks memory flatness: peak RSS at ``--flat-products``
(2,000) products against ``--products``.

    .venv/bin/python bench/run.py [--products 10000] [--runs 3] [--only a,b,c,f] [--json out.json]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import gensite  # noqa: E402
from common import CONCURRENCY, scrapy_cli_args  # noqa: E402
from server import NginxServer  # noqa: E402

CACHE = BENCH / ".cache"
CRAWLEE_VENV = BENCH / ".venv-crawlee"
CRAWLEE_REQUIREMENTS = BENCH / "requirements-crawlee.txt"
WORKFLOW = BENCH / "shop.yaml"
MAIN_VENV_BIN = ROOT / ".venv" / "bin"


class BenchError(RuntimeError):
    """A run failed or produced wrong output: the benchmark is not valid."""


# --------------------------------------------------------------------------- crawlers


def _venv_exe(name: str) -> str:
    exe = MAIN_VENV_BIN / name
    if exe.exists():
        return str(exe)
    if name == "python":
        return sys.executable
    found = shutil.which(name)
    if not found:
        raise BenchError(f"{name} not found (looked in {MAIN_VENV_BIN} and PATH)")
    return found


@dataclass(frozen=True)
class Crawler:
    key: str
    label: str
    command: Callable[[str, Path], list[str]]  # (base_url, items path) -> argv
    cwd: Path | None  # None: the run's work dir


def _wfcrawl_scrapy(base_url: str, out: Path) -> list[str]:
    return [
        _venv_exe("scrapy"), "crawl", "workflow",
        "-a", f"workflow={WORKFLOW}", "-a", f"base_url={base_url}",
        "-O", str(out), *scrapy_cli_args(),
    ]


def _wfcrawl_cli(base_url: str, out: Path) -> list[str]:
    return [_venv_exe("wfcrawl"), "run", str(WORKFLOW), "--base-url", base_url, "-O", str(out), *scrapy_cli_args()]


def _wfcrawl_fast(base_url: str, out: Path) -> list[str]:
    """(f): wfcrawl with its opt-in fast options, as users turn them on (``wfcrawl run
    --fast``, wfcrawl.settings.defaults.FAST_OPTIONS: a parse worker, the aiohttp
    download handler, uvloop; ``pip install 'wfcrawl[fast]'``); one parse worker
    whatever the core count, so that runs on other machines compare."""
    return [*_wfcrawl_cli(base_url, out), "--fast", "--parse-workers", "1"]


def _handwritten(base_url: str, out: Path) -> list[str]:
    return [_venv_exe("python"), str(BENCH / "handwritten.py"), "--base-url", base_url, "-O", str(out)]


def _crawlee(base_url: str, out: Path) -> list[str]:
    return [
        str(CRAWLEE_VENV / "bin" / "python"), str(BENCH / "crawlee_run.py"),
        "--base-url", base_url, "-O", str(out), "--concurrency", str(CONCURRENCY),
    ]


def crawlers(wfcrawl_cli: bool) -> dict[str, Crawler]:
    return {
        "a": Crawler(
            "a",
            "(a) wfcrawl WorkflowSpider",
            _wfcrawl_cli if wfcrawl_cli else _wfcrawl_scrapy,
            ROOT,  # scrapy crawl needs the project's scrapy.cfg
        ),
        "b": Crawler("b", "(b) hand-written Scrapy spider", _handwritten, None),
        "c": Crawler("c", "(c) Crawlee ParselCrawler", _crawlee, None),
        "f": Crawler("f", "(f) wfcrawl run --fast (parse worker, aiohttp, uvloop)", _wfcrawl_fast, ROOT),
    }


def check_wfcrawl(wfcrawl_cli: bool) -> None:
    """Fail early, with a hint, if the wfcrawl engine cannot run yet."""
    try:
        cmd = [_venv_exe("wfcrawl"), "--help"] if wfcrawl_cli else [_venv_exe("scrapy"), "list"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    except (OSError, BenchError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"wfcrawl is not runnable ({exc}); run with --only b,c") from exc
    if proc.returncode != 0 or (not wfcrawl_cli and "workflow" not in proc.stdout.split()):
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise BenchError(
            f"wfcrawl is not runnable yet (`{' '.join(cmd[-2:])}` in {ROOT} failed or listed no `workflow` spider: "
            f"{' | '.join(detail) or 'no output'}); run with --only b,c"
        )


def check_fast_options() -> None:
    """(f) needs the ``fast`` extra: aiohttp and uvloop in the project's venv."""
    probe = [_venv_exe("python"), "-c", "import aiohttp, uvloop, wfcrawl.handlers.aiohttp"]
    proc = subprocess.run(probe, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise BenchError(f"(f) needs wfcrawl's fast extra ({detail}): .venv/bin/pip install -e '.[fast]', or --only a,b,c")


def ensure_crawlee_venv() -> None:
    """Create ``bench/.venv-crawlee`` with Crawlee when it is missing or broken."""
    py = CRAWLEE_VENV / "bin" / "python"
    probe = [str(py), "-c", "import crawlee, parsel, crawlee.crawlers"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return
    log(f"setting up {CRAWLEE_VENV.relative_to(ROOT)} (pip install -r {CRAWLEE_REQUIREMENTS.name}) ...")
    if not py.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--clear", str(CRAWLEE_VENV)], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(CRAWLEE_REQUIREMENTS)],
        check=True,
    )
    if subprocess.run(probe, capture_output=True).returncode != 0:
        raise BenchError(f"{CRAWLEE_VENV} was set up but cannot import crawlee")


# --------------------------------------------------------------------------- site


def ensure_site(products: int, seed: int) -> Path:
    """The generated site for (products, seed, generator version), generated once and cached."""
    key = f"v{gensite.GENERATOR_VERSION}-s{seed}-n{products}"
    root = CACHE / "sites" / key
    stamp = CACHE / "sites" / f"{key}.done"  # outside the web root
    if stamp.is_file() and (root / "index.html").is_file():
        return root
    log(f"generating site: {products} products -> {root.relative_to(ROOT)} ...")
    t0 = time.perf_counter()
    stamp.unlink(missing_ok=True)
    digest = gensite.generate(root, products, seed)
    stamp.write_text(digest + "\n")
    log(f"  done in {time.perf_counter() - t0:.1f}s (sha256 {digest[:16]}...)")
    return root


def site_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- runs

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: A run during which other processes used more than this share of a core is flagged.
BACKGROUND_WARN_PCT = 20.0


def system_busy_s() -> float:
    """CPU seconds spent busy by all cores since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / CLK_TCK


class GroupRSS(threading.Thread):
    """Samples the summed resident set size of a process group (a crawler and its
    worker processes) every ``interval`` seconds; ``peak_kib`` is the highest sum.
    The group's members are looked up in /proc every ``discover`` samples, and only
    their statm is read in between, so the harness takes next to no CPU from the
    run it measures."""

    PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

    def __init__(self, pgid: int, interval: float = 0.2, discover: int = 10) -> None:
        super().__init__(daemon=True)
        self.pgid = pgid
        self.interval = interval
        self.discover = discover
        self.peak_kib = 0
        self.done = threading.Event()
        self.members: list[int] = [pgid]

    def sample(self) -> int:
        total = 0
        for pid in self.members:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1])  # resident, in pages
            except (OSError, ValueError, IndexError):
                continue
        return total * self.PAGE_KIB

    def run(self) -> None:
        n = 0
        while not self.done.wait(self.interval):
            if n % self.discover == 1:  # the first lookup 0.2 s after start
                self.members = group_pids(self.pgid) or self.members
            n += 1
            self.peak_kib = max(self.peak_kib, self.sample())


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, /proc/PID/stat fields after the command name) of every live process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                yield int(entry.name), f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue


def group_pids(pgid: int) -> list[int]:
    return [pid for pid, fields in _proc_stats() if int(fields[2]) == pgid]  # pgrp


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group (nginx)."""
    return sum(int(f[11]) + int(f[12]) for _, f in _proc_stats() if int(f[2]) == pgid) / CLK_TCK  # utime, stime


@dataclass
class RunResult:
    crawler: str
    products: int
    index: int
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_kib: int
    pages: int
    non_200: int
    items: int
    exit_code: int
    nginx_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # CPU used meanwhile by every other process on the machine

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.wall_s

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall_s

    @property
    def cpu_pct(self) -> float:
        return 100 * (self.user_s + self.sys_s) / self.wall_s

    @property
    def cpu_ms_per_page(self) -> float:
        return 1000 * (self.user_s + self.sys_s) / self.pages if self.pages else float("nan")

    @property
    def nginx_cpu_pct(self) -> float:
        return 100 * self.nginx_cpu_s / self.wall_s

    @property
    def other_cpu_pct(self) -> float:
        return 100 * self.other_cpu_s / self.wall_s

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_kib / 1024

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            pages_per_s=self.pages_per_s,
            items_per_s=self.items_per_s,
            cpu_pct=self.cpu_pct,
            cpu_ms_per_page=self.cpu_ms_per_page,
            peak_rss_mib=self.peak_rss_mib,
            nginx_cpu_pct=self.nginx_cpu_pct,
            other_cpu_pct=self.other_cpu_pct,
        )
        return d


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def run_once(
    crawler: Crawler,
    server: NginxServer,
    workdir: Path,
    products: int,
    index: int,
    timeout: float,
    expected_pages: int,
) -> tuple[RunResult, Path]:
    tag = f"{crawler.key}-n{products}-{index}"
    items_path = workdir / f"{tag}.jsonl"
    argv = crawler.command(server.base_url, items_path)
    offset = server.log_offset()
    nginx_pgid = server.pid or -1
    nginx0, busy0 = group_cpu_s(nginx_pgid), system_busy_s()
    with (workdir / f"{tag}.stdout").open("wb") as out, (workdir / f"{tag}.stderr").open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=crawler.cwd or workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,  # its own process group: a timeout / Ctrl-C kills all of it
        )
        timed_out = threading.Event()

        def on_timeout() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, on_timeout)
        timer.start()
        rss = GroupRSS(proc.pid)  # its own session: process group id = its pid
        rss.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            timer.cancel()
            rss.done.set()
            rss.join()
        wall = time.perf_counter() - t0
        busy = system_busy_s() - busy0
        nginx_cpu = group_cpu_s(nginx_pgid) - nginx0
        proc.returncode = os.waitstatus_to_exitcode(status)
    statuses = server.requests_logged(offset)
    if sum(statuses.values()) != expected_pages or set(statuses) != {200}:
        (workdir / f"{tag}.access.log").write_bytes(server.log_since(offset))
    result = RunResult(
        crawler=crawler.key,
        products=products,
        index=index,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_kib=max(usage.ru_maxrss, rss.peak_kib),  # KiB on Linux
        pages=sum(statuses.values()),
        non_200=sum(n for s, n in statuses.items() if s != 200),
        items=0,
        exit_code=proc.returncode,
        nginx_cpu_s=nginx_cpu,
        other_cpu_s=max(0.0, busy - usage.ru_utime - usage.ru_stime - nginx_cpu),
    )
    if timed_out.is_set():
        raise BenchError(f"{crawler.label} run {tag} timed out after {timeout:.0f}s; log: {workdir / (tag + '.stderr')}")
    if proc.returncode != 0:
        raise BenchError(
            f"{crawler.label} run {tag} exited with {proc.returncode}; `{' '.join(argv)}`\n"
            f"--- stderr tail ({workdir / (tag + '.stderr')}):\n{_tail(workdir / (tag + '.stderr'))}"
        )
    return result, items_path


def verify_items(path: Path, expected: dict[str, dict[str, Any]], label: str) -> int:
    """Check that ``path`` holds exactly one correct item per product; return the item count.

    wfcrawl items carry ``_type``/``_meta``; items of another ``_type`` are not
    products and are ignored.  Extra keys (``_meta``, ``url``) are ignored.
    """
    if not path.is_file():
        raise BenchError(f"{label}: no items file {path}")
    seen: set[str] = set()
    problems: list[str] = []
    unknown = duplicates = wrong = 0
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            item = json.loads(line)
            if item.get("_type", "product") != "product":
                continue
            sku = item.get("sku")
            if sku not in expected:
                unknown += 1
                if len(problems) < 5:
                    problems.append(f"line {lineno}: unknown sku {sku!r}")
                continue
            if sku in seen:
                duplicates += 1
                if len(problems) < 5:
                    problems.append(f"line {lineno}: duplicate sku {sku!r}")
                continue
            seen.add(sku)
            want = expected[sku]
            diff = {k: (item.get(k), v) for k, v in want.items() if item.get(k) != v}
            if diff:
                wrong += 1
                if len(problems) < 5:
                    shown = "; ".join(f"{k}: got {g!r}, want {w!r}" for k, (g, w) in list(diff.items())[:3])
                    problems.append(f"line {lineno} sku {sku}: {shown}")
    missing = len(expected) - len(seen)
    if missing or unknown or duplicates or wrong:
        raise BenchError(
            f"{label}: items are not exactly the {len(expected)} products: {len(seen)} distinct, "
            f"{missing} missing, {duplicates} duplicate, {unknown} unknown, {wrong} with wrong fields ({path})\n  "
            + "\n  ".join(problems)
        )
    return len(seen)


#: Settings that name the project or only matter with a download delay (both runs use 0).
IGNORED_SETTINGS = frozenset(
    {"BOT_NAME", "SPIDER_MODULES", "NEWSPIDER_MODULE", "COMMANDS_MODULE",
     "RANDOMIZE_DOWNLOAD_DELAY", "DOWNLOAD_DELAY_JITTER"}
)  # fmt: skip


def logged_scrapy_settings(stderr: Path) -> dict[str, str] | None:
    """The "Overridden settings" dict a Scrapy run logs at INFO, values as strings."""
    lines = iter(stderr.read_text(errors="replace").splitlines())
    for line in lines:
        if line.endswith("Overridden settings:"):
            text = ""
            for more in lines:
                text += more + "\n"
                with contextlib.suppress(SyntaxError, ValueError):
                    value = ast.literal_eval(text)
                    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None
            return None
    return None


def settings_differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Settings in which two Scrapy runs differ (unlisted settings have Scrapy's default)."""
    try:
        from scrapy.settings import default_settings
    except ImportError:
        return []
    out = []
    for name in sorted((a.keys() | b.keys()) - IGNORED_SETTINGS):
        default = str(getattr(default_settings, name, None))
        va, vb = a.get(name, default), b.get(name, default)
        if va != vb:
            out.append(f"{name}: a={va} b={vb}")
    return out


def run_series(
    selected: Sequence[Crawler],
    products: int,
    seed: int,
    runs: int,
    workdir: Path,
    timeout: float,
    keep: bool,
) -> tuple[list[RunResult], dict[str, Any]]:
    site = ensure_site(products, seed)
    catalog = gensite.build_catalog(products, seed)
    expected = {p.sku: gensite.expected_item(p) for p in catalog.products}
    expected_pages = catalog.expected_pages()
    info: dict[str, Any] = {"products": products, "expected_pages": expected_pages, "site_bytes": site_bytes(site), "site": str(site)}
    results: list[RunResult] = []
    logged: dict[str, dict[str, str] | None] = {}
    with NginxServer(site) as server:
        log(f"nginx {server.base_url} serving {site.relative_to(ROOT)} ({expected_pages} pages)")
        for i in range(1, runs + 1):
            for crawler in selected:
                log(f"  run {i}/{runs} {crawler.label} @ {products} products ...")
                result, items_path = run_once(crawler, server, workdir, products, i, timeout, expected_pages)
                result.items = verify_items(items_path, expected, f"{crawler.label} run {i}")
                if crawler.key in ("a", "b") and crawler.key not in logged:
                    logged[crawler.key] = logged_scrapy_settings(workdir / f"{crawler.key}-n{products}-{i}.stderr")
                if not keep:
                    items_path.unlink()
                note = ""
                if result.other_cpu_pct > BACKGROUND_WARN_PCT:
                    note += f"  WARNING: other processes used {result.other_cpu_pct:.0f}% of a core meanwhile"
                if result.pages != expected_pages or result.non_200:
                    info["keep_workdir"] = True
                    log_copy = workdir / f"{crawler.key}-n{products}-{i}.access.log"
                    note += (
                        f"  WARNING: {result.pages} requests (expected {expected_pages}), {result.non_200} not 200"
                        f" (requests: {log_copy})"
                    )
                log(
                    f"    {result.wall_s:6.1f}s  {result.pages_per_s:7.1f} pages/s  {result.cpu_pct:5.1f}% CPU  "
                    f"{result.peak_rss_mib:6.1f} MiB  {result.items} items ok{note}"
                )
                results.append(result)
    a_settings, b_settings = logged.get("a"), logged.get("b")
    if a_settings is not None and b_settings is not None:
        diffs = settings_differences(a_settings, b_settings)
        info["engine_settings_a"] = [d for d in diffs if "wfcrawl" in d]
        info["settings_differences_a_b"] = [d for d in diffs if "wfcrawl" not in d]
        for diff in info["settings_differences_a_b"]:
            log(f"  WARNING: (a) and (b) ran with different Scrapy settings: {diff}")
    return results, info


# --------------------------------------------------------------------------- report


@dataclass
class Stat:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        return cls(statistics.median(values), min(values), max(values))

    def fmt(self, digits: int = 0) -> str:
        f = f"{{:,.{digits}f}}"
        if self.min == self.max:
            return f.format(self.median)
        return f"{f.format(self.median)} ({f.format(self.min)}-{f.format(self.max)})"


METRICS: tuple[tuple[str, str, int], ...] = (
    ("pages_per_s", "pages/s", 0),
    ("items_per_s", "items/s", 0),
    ("cpu_pct", "CPU %", 0),
    ("cpu_ms_per_page", "CPU ms/page", 2),
    ("peak_rss_mib", "peak RSS MiB", 0),
    ("wall_s", "wall s", 1),
)


def summarize(results: Sequence[RunResult]) -> dict[str, dict[str, Stat]]:
    out: dict[str, dict[str, Stat]] = {}
    for key in dict.fromkeys(r.crawler for r in results):
        rs = [r for r in results if r.crawler == key]
        out[key] = {m: Stat.of([getattr(r, m) for r in rs]) for m, _, _ in METRICS}
        out[key]["pages"] = Stat.of([r.pages for r in rs])
        out[key]["items"] = Stat.of([r.items for r in rs])
        out[key]["nginx_cpu_pct"] = Stat.of([r.nginx_cpu_pct for r in rs])
        out[key]["other_cpu_pct"] = Stat.of([r.other_cpu_pct for r in rs])
    return out


def versions() -> dict[str, str]:
    v = {"python": platform.python_version()}
    for dist in ("scrapy", "parsel", "wfcrawl"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            v[dist] = importlib.metadata.version(dist)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        v["crawlee"] = subprocess.run(
            [str(CRAWLEE_VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('crawlee'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    with contextlib.suppress(OSError):
        nginx = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-v"], capture_output=True, text=True)
        v["nginx"] = nginx.stderr.strip().split("/")[-1]
    return v


def render_report(
    labels: dict[str, str],
    summary: dict[str, dict[str, Stat]],
    info: dict[str, Any],
    runs: int,
    vers: dict[str, str],
    flat: dict[str, dict[str, float]] | None,
    flat_products: int,
) -> str:
    n = info["products"]
    lines = [
        f"## wfcrawl benchmark: {n:,} products",
        "",
        f"{info['expected_pages']:,} pages ({info['site_bytes'] / 1e6:.0f} MB) served by nginx {vers.get('nginx', '?')} "
        f"(1 worker) on 127.0.0.1; {runs} run(s) per crawler, interleaved; concurrency {CONCURRENCY}; "
        f"{os.cpu_count()} CPUs. Python {vers['python']}, Scrapy {vers.get('scrapy', '?')}, "
        f"Crawlee {vers.get('crawlee', '-')}, wfcrawl {vers.get('wfcrawl', '-')}.",
        "",
        "Median (min-max) over the runs. Every run returned all "
        f"{n:,} product items, each checked field by field.",
        "",
        "| crawler | pages | items | " + " | ".join(h for _, h, _ in METRICS) + " |",
        "|---|---:|---:|" + "---:|" * len(METRICS),
    ]
    for key, stats in summary.items():
        cells = [stats["pages"].fmt(), stats["items"].fmt()] + [stats[m].fmt(d) for m, _, d in METRICS]
        lines.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    speed, cost = [], []
    for mine, other in (("a", "b"), ("a", "c"), ("f", "c")):
        if mine in summary and other in summary:
            a, o = summary[mine], summary[other]
            speed.append(f"{mine}/{other} = **{a['pages_per_s'].median / o['pages_per_s'].median:.2f}**")
            cost.append(f"{mine}/{other} = {a['cpu_ms_per_page'].median / o['cpu_ms_per_page'].median:.2f}")
    if speed:
        lines += [
            "",
            "Median pages/s ratio: " + ", ".join(speed) + " (> 1: wfcrawl is faster). "
            "Median CPU ms/page ratio: " + ", ".join(cost) + " (< 1: wfcrawl needs less CPU per page).",
        ]
    nginx = ", ".join(f"{k} {s['nginx_cpu_pct'].median:.0f}%" for k, s in summary.items())
    lines += ["", f"nginx's CPU (share of one core, median): {nginx}."]
    busy = [
        f"{labels[k]} {s['other_cpu_pct'].max:.0f}%"
        for k, s in summary.items()
        if s["other_cpu_pct"].max > BACKGROUND_WARN_PCT
    ]
    if busy:
        lines += [
            "",
            "**Warning**: other processes were busy during some runs (max share of one core): "
            + ", ".join(busy) + "; these figures are not reliable, rerun on an idle machine.",
        ]
    diffs = info.get("settings_differences_a_b")
    if diffs:
        lines += ["", "**Warning**: (a) and (b) did not run with the same Scrapy settings: " + "; ".join(diffs) + "."]
    elif diffs is not None:
        lines += ["", "(a) and (b) logged the same Scrapy settings, apart from wfcrawl's own components."]
    if flat:
        lines += [
            "",
            f"### Memory flatness: peak RSS at {flat_products:,} vs {n:,} products (median)",
            "",
            f"| crawler | {flat_products:,} products MiB | {n:,} products MiB | ratio |",
            "|---|---:|---:|---:|",
        ]
        for key, f in flat.items():
            lines.append(f"| {labels[key]} | {f['small_mib']:.0f} | {f['large_mib']:.0f} | {f['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=gensite.DEFAULT_PRODUCTS, help="product pages (default 10000)")
    ap.add_argument("--runs", type=int, default=3, help="runs per crawler (default 3)")
    ap.add_argument("--only", default="a,b,c,f", help="crawlers to run, e.g. b,c (default a,b,c,f)")
    ap.add_argument("--json", type=Path, help="also write all runs and the summary as JSON here")
    ap.add_argument("--flat-products", type=int, default=2000,
                    help="small site for the memory-flatness check (0: skip it; default 2000)")
    ap.add_argument("--flat-runs", type=int, default=None, help="runs per crawler for the flatness check (default --runs)")
    ap.add_argument("--seed", type=int, default=gensite.DEFAULT_SEED)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before a run is killed (default 1800)")
    ap.add_argument("--wfcrawl-cli", action="store_true",
                    help="run (a) as `wfcrawl run` instead of `scrapy crawl workflow`")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (items, logs of every run)")
    args = ap.parse_args(argv)

    all_crawlers = crawlers(args.wfcrawl_cli)
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    if not keys or any(k not in all_crawlers for k in keys):
        ap.error(f"--only takes a comma-separated subset of {','.join(all_crawlers)}")
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    selected = [all_crawlers[k] for k in dict.fromkeys(keys)]
    labels = {c.key: c.label for c in selected}

    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        log(f"WARNING: load average {load:.1f} on {os.cpu_count()} CPUs: other work will skew the figures")
    workdir = Path(tempfile.mkdtemp(prefix="wfcrawl-bench-"))
    ok = False
    try:
        if "a" in labels or "f" in labels:
            check_wfcrawl(args.wfcrawl_cli)
        if "f" in labels:
            check_fast_options()
        if "c" in labels:
            ensure_crawlee_venv()
        results, info = run_series(selected, args.products, args.seed, args.runs, workdir, args.timeout, args.keep)
        summary = summarize(results)

        flat: dict[str, dict[str, float]] | None = None
        flat_results: list[RunResult] = []
        flat_info: dict[str, Any] = {}
        if args.flat_products and args.flat_products < args.products:
            flat_results, flat_info = run_series(
                selected, args.flat_products, args.seed, args.flat_runs or args.runs, workdir, args.timeout, args.keep
            )
            small = summarize(flat_results)
            flat = {
                k: {
                    "small_mib": small[k]["peak_rss_mib"].median,
                    "large_mib": summary[k]["peak_rss_mib"].median,
                    "ratio": summary[k]["peak_rss_mib"].median / small[k]["peak_rss_mib"].median,
                }
                for k in summary
            }
        keep_logs = bool(info.pop("keep_workdir", False) or flat_info.pop("keep_workdir", False))
        vers = versions()
        print(render_report(labels, summary, info, args.runs, vers, flat, args.flat_products))
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "config": {
                            "products": args.products, "runs": args.runs, "only": list(labels),
                            "concurrency": CONCURRENCY, "seed": args.seed,
                            "generator_version": gensite.GENERATOR_VERSION, "cpus": os.cpu_count(),
                            "flat_products": args.flat_products if flat else None,
                        },
                        "site": info,
                        "versions": vers,
                        "runs": [r.as_dict() for r in results + flat_results],
                        "summary": {k: {m: asdict(s) for m, s in v.items()} for k, v in summary.items()},
                        "flatness": flat,
                    },
                    indent=2,
                )
                + "\n"
            )
            log(f"wrote {args.json}")
        # keep the logs when a run made unexpected requests
        ok = not keep_logs
        return 0
    except BenchError as exc:
        log(f"\nBENCHMARK FAILED: {exc}")
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work dir kept: {workdir}")


if __name__ == "__main__":
    sys.exit(main())
