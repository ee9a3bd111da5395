"""Shared fixtures: the fixture-site HTTP server and real crawls in child processes.

Crawls run as ``python -m scrapy crawl workflow ...`` child processes from the
project root: the Twisted reactor cannot be restarted inside the test process,
and this is exactly how users (and scrapyd) run them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.mockserver import MockServer
from wfcrawl.handlers import aiohttp_handler_available

if TYPE_CHECKING:
    from tests.pubsub_emulator import Project, PubSubEmulator
    from tests.services import PgBouncer, TempDatabase

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: wfcrawl.handlers.aiohttp builds on the aiohttp handler Scrapy ships since 2.19; CI also
#: runs the oldest Scrapy pyproject.toml admits (make test-oldest), where it cannot load.
SCRAPY_HAS_AIOHTTP = aiohttp_handler_available()
needs_scrapy_aiohttp = pytest.mark.skipif(
    not SCRAPY_HAS_AIOHTTP, reason="this Scrapy has no aiohttp download handler (Scrapy >= 2.19)"
)


def require_service(name: str, available: bool, how: str) -> None:
    """Skip locally when a service is missing; in CI a missing service is a failure."""
    if available:
        return
    message = f"{name} is not available ({how})"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


@dataclass
class Crawl:
    returncode: int
    items: list[dict[str, Any]]
    stats: dict[str, Any]
    stdout: str
    stderr: str

    def of_type(self, item_type: str) -> list[dict[str, Any]]:
        return [i for i in self.items if i.get("_type") == item_type]

    def fields(self, item_type: str) -> list[dict[str, Any]]:
        """Items of a type without provenance (and storage key), sorted for exact comparison."""
        out = [{k: v for k, v in i.items() if k not in ("_type", "_meta", "_key")} for i in self.of_type(item_type)]
        return sorted(out, key=lambda d: json.dumps(d, sort_keys=True))


def run_crawl(
    workflow: str | Path,
    *args: str,
    base_url: str | None = None,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Crawl:
    """Run one crawl of ``workflow`` (a path, or YAML text) and collect its outcome."""
    if isinstance(workflow, str) and "\n" in workflow:
        path = tmp_path / "workflow.yaml"
        path.write_text(textwrap.dedent(workflow))
        workflow = path
    items_file = tmp_path / "items.jsonl"
    stats_file = tmp_path / "stats.json"
    for f in (items_file, stats_file):
        f.unlink(missing_ok=True)
    cmd: list[str] = [
        sys.executable, "-m", "scrapy", "crawl", "workflow",
        "-a", f"workflow={workflow}", "-O", f"{items_file}:jsonlines",
        "-s", f"WFCRAWL_STATS_FILE={stats_file}",
    ]
    if base_url:
        cmd += ["-a", f"base_url={base_url}"]
    cmd += list(args)
    proc = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    items = [json.loads(line) for line in items_file.read_text().splitlines()] if items_file.exists() else []
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    return Crawl(proc.returncode, items, stats, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def server() -> Iterator[MockServer]:
    """One fixture-site server for the session (don't rely on its request log)."""
    with MockServer() as s:
        yield s


@pytest.fixture
def fresh_server() -> Iterator[MockServer]:
    """A server of its own, for tests that read the request log."""
    with MockServer() as s:
        yield s


@pytest.fixture
def crawl(tmp_path: Path) -> Callable[..., Crawl]:
    def _crawl(workflow: str | Path, *args: str, **kwargs: Any) -> Crawl:
        return run_crawl(workflow, *args, tmp_path=tmp_path, **kwargs)

    return _crawl


#: The server's own database, for creating throw-away ones (trust auth, as on CI).
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def database() -> Iterator[TempDatabase]:
    """A PostgreSQL database of this test module's own, dropped afterwards."""
    from tests.services import TempDatabase, can_connect

    require_service("PostgreSQL", can_connect(POSTGRES_ADMIN), "127.0.0.1:5432, apt-get install postgresql")
    with TempDatabase(POSTGRES_ADMIN) as db:
        yield db


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    """A real PgBouncer in transaction pooling mode, on a port of its own."""
    from tests.services import PgBouncer

    require_service("PgBouncer", shutil.which("pgbouncer") is not None, "apt-get install pgbouncer")
    with PgBouncer() as pgb:
        yield pgb


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    """Google's Pub/Sub emulator for the session, on a port the kernel chose."""
    from tests.pubsub_emulator import PubSubEmulator, emulator_script

    script = emulator_script()
    require_service("Pub/Sub emulator", script is not None,
                    "tools/test-services.sh installs google-cloud-cli-pubsub-emulator and Java 17")
    assert script is not None
    with PubSubEmulator(script) as emulator:
        yield emulator


@pytest.fixture
def pubsub_project(pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A project of the test's own on the emulator; the environment points Google's clients
    (here and in the child processes) at it."""
    from tests.pubsub_emulator import Project

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    monkeypatch.setenv("GRPC_VERBOSITY", "ERROR")
    project = Project()
    yield project
    project.close()


def problems(text: str, name: str = "wf.yaml") -> list[str]:
    """Every problem of a workflow document as ``line:col: path: message``, sorted."""
    from wfcrawl.exceptions import WorkflowError
    from wfcrawl.workflow import check_source
    from wfcrawl.workflow.source import parse_text

    try:
        source = parse_text(textwrap.dedent(text), name)
    except WorkflowError as exc:
        found = list(exc.problems)
    else:
        _, found = check_source(source)
    assert all(p.file == name for p in found)
    return [f"{p.line}:{p.column}: {p.path}: {p.message}" for p in sorted(found)]


def stat_items(stats: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The stats under ``prefix`` (prefix removed), for exact comparison."""
    return {k[len(prefix):]: v for k, v in stats.items() if k.startswith(prefix)}


__all__: Sequence[str] = ["IN_CI", "POSTGRES_ADMIN", "ROOT", "Crawl", "problems", "require_service", "run_crawl", "stat_items"]
