"""The Docker image (docker/Dockerfile), built and run: `make image-test` builds it on a
debootstrap base (tools/image-test.sh) and runs this module with WFCRAWL_IMAGE set.

Opt-in: without WFCRAWL_IMAGE the module is skipped (`make test` does not build images);
with it, a Docker engine that does not answer is a failure. Containers use the host's
network where they need the host's PostgreSQL and fixture site (127.0.0.1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.launcher_support import SHOP_ITEMS, http, wait_until
from tests.mockserver import MockServer

IMAGE = os.environ.get("WFCRAWL_IMAGE", "")
pytestmark = pytest.mark.skipif(not IMAGE, reason="opt-in: make image-test (sets WFCRAWL_IMAGE)")


def docker(*args: str, timeout: float = 300, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


@pytest.fixture
def containers() -> Iterator[list[str]]:
    started: list[str] = []
    yield started
    for name in started:
        docker("rm", "-f", name, check=False)


def run_detached(containers: list[str], *args: str) -> str:
    name = f"wfcrawl-test-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, *args)
    containers.append(name)
    return name


def test_the_image_runs_as_an_unprivileged_user_under_tini_with_a_healthcheck() -> None:
    config = json.loads(docker("image", "inspect", IMAGE))[0]["Config"]
    assert (config["User"], config["Entrypoint"], config["Cmd"]) == (
        "wfcrawl", ["tini", "--"], ["wfcrawl", "serve", "--host", "0.0.0.0"])
    assert config["Healthcheck"]["Test"][:3] == ["CMD", "python3", "-c"]
    assert "/healthz" in config["Healthcheck"]["Test"][3]
    assert list(config["ExposedPorts"]) == ["8080/tcp"]
    # PID 1 is tini (it reaps orphans); the command runs as uid 10001.
    assert docker("run", "--rm", IMAGE, "sh", "-c", "cat /proc/1/comm; id -u") == "tini\n10001\n"


def _without_meta(items: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps({k: v for k, v in i.items() if k != "_meta"}, sort_keys=True) for i in items)


def test_wfcrawl_demo_in_the_image_gives_the_same_items_as_here(tmp_path: Path) -> None:
    inside = docker("run", "--rm", IMAGE, "sh", "-c",
                    "wfcrawl demo --out /tmp/items.jsonl >/dev/null 2>&1 && cat /tmp/items.jsonl")
    here = tmp_path / "items.jsonl"
    subprocess.run([sys.executable, "-m", "wfcrawl.cli", "demo", "--out", str(here)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    image_items = [json.loads(line) for line in inside.splitlines()]
    assert len(image_items) == 72
    assert _without_meta(image_items) == _without_meta([json.loads(line) for line in here.read_text().splitlines()])


def test_serve_honours_port_and_becomes_healthy(containers: list[str]) -> None:
    # No database: executions in memory. The healthcheck reads PORT as serve does.
    name = run_detached(containers, "-e", "PORT=8123", "-e", "WFCRAWL_API_KEYS=probe:" + "0" * 64,
                        "--health-interval=1s", "--health-start-period=60s", IMAGE)
    wait_until(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", name).strip() == "healthy",
               120, "the container to be healthy")
    assert "wfcrawl launcher listening on http://127.0.0.1:8123" in docker("logs", name)


SLOW = """\
name: slow
obey_robots: false
start_urls: ['/slow/index.html?pages=40&delay=2']
phases:
  index:
    nodes:
      - {type: extract_links, css: ul.links a, marker: page}
    transitions:
      - {marker: page, to: page}
  page:
    nodes:
      - {type: extract, item: page, fields: {title: title}}
"""


def test_serve_launches_crawls_and_stops_on_sigterm_recording_the_execution(
    containers: list[str], database: Any, fresh_server: MockServer
) -> None:
    from wfcrawl.storage.postgres.executions import PostgresExecutionStore
    from wfcrawl.web.auth import generate_api_key, key_digest

    key = generate_api_key()
    auth = {"Authorization": f"Bearer {key}"}
    # Host network: the container reaches this machine's PostgreSQL and fixture site on
    # 127.0.0.1; PORT=0 lets the kernel choose the port, which serve prints.
    name = run_detached(
        containers, "--network", "host", "-e", "PORT=0", "-e", f"DATABASE_URL={database.dsn}",
        "-e", f"WFCRAWL_API_KEYS=image-test:{key_digest(key)}", IMAGE,
        "wfcrawl", "serve", "--host", "127.0.0.1", "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=127.0.0.0/8",
        "-s", "WFCRAWL_LAUNCHER_KILL_TIMEOUT=6", "-s", "WFCRAWL_API_RATE_LIMIT=0",  # this test polls
    )
    line = wait_until(lambda: next((x for x in docker("logs", name).splitlines() if "listening on" in x), None),
                      120, "serve to listen")
    url = line.rsplit(" ", 1)[-1]
    assert http("GET", url + "/healthz")[::2] == (200, {"status": "ok", "running": 0})

    status, _, body = http("POST", url + "/v1/executions", {"workflow": "shop", "args": {"base_url": fresh_server.url}},
                           auth)
    assert (status, body["started"]) == (201, True), body
    shop_id = body["execution"]["id"]
    done = wait_until(lambda: (r := http("GET", f"{url}/v1/executions/{shop_id}", headers=auth)[2])["execution"]
                      ["status"] in ("succeeded", "degraded", "failed") and r["execution"], 120, "the shop crawl",
                      interval=0.2)
    assert (done["status"], {k: done["stats"][k] for k in SHOP_ITEMS}) == ("succeeded", SHOP_ITEMS)

    status, _, body = http("POST", url + "/v1/executions", {"document": SLOW, "args": {"base_url": fresh_server.url}},
                           auth)
    assert status == 201, body
    slow_id = body["execution"]["id"]
    # Stop it once it crawls (Scrapy's signal handlers are in place): it closes with
    # reason "shutdown" after the page in flight, before the launcher's 6 s kill timeout.
    wait_until(lambda: any(p.startswith("/slow/1?") for p in fresh_server.paths()), 60, "the slow crawl to fetch",
               interval=0.2)
    # Cloud Run: SIGTERM, SIGKILL 10 s later. docker stop -t 10 does the same; exit
    # status 0 (not 137) means it ended by itself in time.
    docker("stop", "-t", "10", name)
    assert docker("inspect", "-f", "{{.State.ExitCode}}", name).strip() == "0"

    store = PostgresExecutionStore(database.dsn)
    try:
        recorded = {e.id: e for e in store.list()}
    finally:
        store.close()
    # The shop crawl stays succeeded even when its process was still exiting at the stop;
    # the slow one was interrupted by the launcher's shutdown: failed, so Pub/Sub would run it again.
    assert {i: (e.status, e.finish_reason, [r["code"] for r in e.reasons]) for i, e in recorded.items()} == {
        shop_id: ("succeeded", "finished", []), slow_id: ("failed", "launcher_shutdown", ["interrupted"])}
    error = recorded[slow_id].error
    assert error is not None
    assert error.splitlines()[:2] == [
        "interrupted: stopped by the launcher (launcher_shutdown)",
        "crawl exited with status 143, finish reason shutdown; stopped by the launcher: launcher_shutdown"]
