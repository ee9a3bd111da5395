"""scrapyd: deploy the project with scrapyd-deploy, schedule a bundled workflow, items appear."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.launcher_support import http, wait_until
from tests.mockserver import MockServer

BIN = Path(sys.executable).parent
# scrapyd's own application, listening on a port the kernel picks (scrapyd itself
# treats http_port = 0 as "no TCP server"): its site is taken from the UNIX socket
# server and served on 127.0.0.1:0 as well; the port is written to the log.
TAC = """\
from twisted.application.internet import TCPServer, UNIXServer
from twisted.application.service import IServiceCollection
from twisted.internet import reactor
from scrapyd import get_application

application = get_application()
site = next(s for s in IServiceCollection(application) if isinstance(s, UNIXServer)).args[1]
tcp = TCPServer(0, site, interface="127.0.0.1")
tcp.setServiceParent(application)
reactor.callWhenRunning(lambda: print("SCRAPYD_URL=http://127.0.0.1:%d" % tcp._port.getHost().port))
"""


@pytest.fixture
def scrapyd(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if not (BIN / "scrapyd-deploy").exists():
        pytest.fail("scrapyd-client is not installed: pip install 'wfcrawl[scrapyd]'")
    home = tmp_path / "scrapyd"
    home.mkdir()
    (home / "scrapyd.conf").write_text(textwrap.dedent(f"""\
        [scrapyd]
        bind_address =
        unix_socket_path = {home}/s.sock
        eggs_dir = {home}/eggs
        logs_dir = {home}/logs
        items_dir = {home}/items
        dbs_dir = {home}/dbs
        poll_interval = 0.2
        max_proc = 1
        """))
    (home / "app.tac").write_text(TAC)
    log = home / "scrapyd.log"
    proc = subprocess.Popen(
        [BIN / "twistd", "--nodaemon", "--pidfile=", f"--logfile={log}", "-y", "app.tac"],
        cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        line = wait_until(
            lambda: proc.poll() is not None or (
                log.exists() and next((ln for ln in log.read_text().splitlines() if "SCRAPYD_URL=" in ln), None)),
            60, "scrapyd to listen",
        )
        assert proc.poll() is None, log.read_text() if log.exists() else "scrapyd exited"
        yield line.split("SCRAPYD_URL=", 1)[1].strip(), home
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_deploy_and_schedule_a_bundled_workflow(scrapyd: tuple[str, Path], server: MockServer, tmp_path: Path) -> None:
    url, home = scrapyd
    # Deploy from a copy of the project: scrapyd-deploy writes setup.py and build files into it.
    project = tmp_path / "project"
    project.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")
    shutil.copytree(ROOT / "wfcrawl", project / "wfcrawl", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "workflows", project / "workflows", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    cfg = (ROOT / "scrapy.cfg").read_text().replace("http://localhost:6800", url)
    (project / "scrapy.cfg").write_text(cfg)

    egg = tmp_path / "wfcrawl.egg"
    built = subprocess.run([BIN / "scrapyd-deploy", "--build-egg", str(egg)], cwd=project,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    names = set(zipfile.ZipFile(egg).namelist())
    # The JSON Schema and the example workflows travel in the egg (read from the zip).
    assert {"wfcrawl/workflow/schema.json", "wfcrawl/examples/shop.yaml", "wfcrawl/examples/api.yaml"} <= names
    deployed = subprocess.run([BIN / "scrapyd-deploy", "--egg", str(egg), "--version", "1"], cwd=project,
                              capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    response = json.loads(deployed.stdout)  # scrapyd's addversion.json answer
    assert {k: response.get(k) for k in ("status", "project", "version", "spiders")} == {
        "status": "ok", "project": "wfcrawl", "version": "1", "spiders": 1}

    form = urllib.parse.urlencode({"project": "wfcrawl", "spider": "workflow", "workflow": "shop",
                                   "base_url": server.url}).encode()
    status, _, body = http("POST", url + "/schedule.json", raw=form,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body["status"]) == (200, "ok"), body
    job = body["jobid"]
    wait_until(lambda: any(j["id"] == job for j in http("GET", url + "/listjobs.json?project=wfcrawl")[2]["finished"]),
               120, "the scrapyd job to finish")
    items_file = home / "items" / "wfcrawl" / "workflow" / f"{job}.jl"
    items = [json.loads(line) for line in items_file.read_text().splitlines()]
    counts = {t: sum(1 for i in items if i["_type"] == t) for t in ("product", "seller")}
    assert counts == {"product": 7, "seller": 2}
    assert {i["_meta"]["workflow"] for i in items} == {"shop"}
    log = (home / "logs" / "wfcrawl" / "workflow" / f"{job}.log").read_text()
    assert "'finish_reason': 'finished'" in log
