"""scrapyd: deploy eggs with scrapyd-deploy to a real scrapyd whose environment has only
wfcrawl's dependencies (requirements.txt), never wfcrawl itself; the newest egg is what
runs; a broken document's located errors and the outcome are in the job log.

The scrapyd environment is a venv of its own (``.venv-scrapyd`` in the project, made from
requirements.txt on first use and again when requirements.txt changes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_service
from tests.launcher_support import http, wait_until
from tests.mockserver import MockServer

BIN = Path(sys.executable).parent
VENV = ROOT / ".venv-scrapyd"
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
BROKEN = """\
name: broken
start_urls: [http://127.0.0.1:1/]
phases:
  a:
    nodes:
      - {type: extract_links, css: "a[", marker: x}
    transitions:
      - {marker: x, to: b}
"""


@pytest.fixture(scope="session")
def scrapyd_venv() -> Path:
    """A venv with requirements.txt only (scrapyd and every dependency; no wfcrawl)."""
    stamp = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()
    marker = VENV / "requirements.sha256"
    if not (marker.exists() and marker.read_text() == stamp):
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = subprocess.run([VENV / "bin" / "pip", "install", "-q", "--disable-pip-version-check", "-r",
                              ROOT / "requirements.txt"], capture_output=True, text=True, timeout=1800)
        require_service("the packages of requirements.txt", pip.returncode == 0, pip.stderr[-2000:])
        marker.write_text(stamp)
    # The point of this environment: wfcrawl comes from the deployed egg or not at all.
    found = subprocess.run([VENV / "bin" / "python", "-c", "import wfcrawl"], cwd="/", capture_output=True, text=True)
    assert "No module named 'wfcrawl'" in found.stderr
    return VENV


def start_scrapyd(venv: Path, home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
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
        [venv / "bin" / "twistd", "--nodaemon", "--pidfile=", f"--logfile={log}", "-y", "app.tac"],
        cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
    )
    line = wait_until(
        lambda: proc.poll() is not None or (
            log.exists() and next((ln for ln in log.read_text().splitlines() if "SCRAPYD_URL=" in ln), None)),
        60, "scrapyd to listen",
    )
    assert proc.poll() is None, log.read_text() if log.exists() else "scrapyd exited"
    return proc, line.split("SCRAPYD_URL=", 1)[1].strip()


@pytest.fixture
def scrapyd(scrapyd_venv: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    # Nothing of this test's environment (its venv, PYTHONPATH) leaks into scrapyd's.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SCRAPY_SETTINGS_MODULE")}
    env["PATH"] = f"{scrapyd_venv / 'bin'}:{env.get('PATH', '')}"
    proc, url = start_scrapyd(scrapyd_venv, tmp_path / "scrapyd", env)
    try:
        yield url, tmp_path / "scrapyd"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def project_copy(tmp_path: Path, name: str, version: str, url: str) -> Path:
    """A copy of the project whose wfcrawl says ``version``: scrapyd-deploy writes setup.py
    and build files into the project it deploys."""
    project = tmp_path / name
    project.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")
    shutil.copytree(ROOT / "wfcrawl", project / "wfcrawl", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "workflows", project / "workflows", ignore=ignore)
    for file in ("pyproject.toml", "README.md", "wfcrawl_scrapyd.py"):
        shutil.copy(ROOT / file, project / file)
    init = project / "wfcrawl" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"', init.read_text()))
    (project / "scrapy.cfg").write_text((ROOT / "scrapy.cfg").read_text().replace("http://localhost:6800", url))
    return project


def deploy(project: Path, version: str, egg: Path) -> None:
    built = subprocess.run([BIN / "scrapyd-deploy", "--build-egg", str(egg)], cwd=project,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    deployed = subprocess.run([BIN / "scrapyd-deploy", "--egg", str(egg), "--version", version], cwd=project,
                              capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stderr
    response = json.loads(deployed.stdout)  # scrapyd's addversion.json answer: it listed the spider from the egg
    assert {k: response.get(k) for k in ("status", "project", "version", "spiders")} == {
        "status": "ok", "project": "wfcrawl", "version": version, "spiders": 1}, response


def schedule(url: str, home: Path, **args: str) -> str:
    form = urllib.parse.urlencode({"project": "wfcrawl", "spider": "workflow", **args}).encode()
    status, _, body = http("POST", url + "/schedule.json", raw=form,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body["status"]) == (200, "ok"), body
    job: str = body["jobid"]
    wait_until(lambda: any(j["id"] == job for j in http("GET", url + "/listjobs.json?project=wfcrawl")[2]["finished"]),
               120, "the scrapyd job to finish")
    return job


def job_log(home: Path, job: str) -> str:
    return (home / "logs" / "wfcrawl" / "workflow" / f"{job}.log").read_text()


def test_two_eggs_on_a_host_without_wfcrawl_the_newest_runs(
    scrapyd: tuple[str, Path], server: MockServer, tmp_path: Path,
) -> None:
    url, home = scrapyd
    first = project_copy(tmp_path, "first", "0.1.0+egg1", url)
    egg = tmp_path / "wfcrawl-1.egg"
    deploy(first, "1", egg)
    names = set(zipfile.ZipFile(egg).namelist())
    # The packages without __init__.py once made the egg unusable where wfcrawl is not installed.
    assert {"wfcrawl/middlewares/__init__.py", "wfcrawl/pipelines/__init__.py", "wfcrawl_scrapyd.py"} <= names
    # The JSON Schema and the example workflows travel in the egg (read from the zip).
    assert {"wfcrawl/workflow/schema.json", "wfcrawl/examples/shop.yaml", "wfcrawl/examples/api.yaml"} <= names
    # What scrapyd-deploy leaves in a project is ignored by git.
    left = sorted(p.name + ("/" if p.is_dir() else "") for p in first.iterdir()
                  if p.name in ("setup.py", "build") or p.name.endswith(".egg-info"))
    assert left == ["build/", "setup.py", "wfcrawl.egg-info/"]
    ignored = subprocess.run(["git", "check-ignore", *left], cwd=ROOT, capture_output=True, text=True)
    assert sorted(ignored.stdout.split()) == left

    deploy(project_copy(tmp_path, "second", "0.1.0+egg2", url), "2", tmp_path / "wfcrawl-2.egg")
    job = schedule(url, home, workflow="shop", base_url=server.url)
    log = job_log(home, job)
    ran = re.search(r"Crawling workflow shop \(execution \w+\) with wfcrawl (\S+) from (\S+)", log)
    assert ran is not None, log[-3000:]
    assert ran.groups() == ("0.1.0+egg2", str(home / "eggs" / "wfcrawl" / "2.egg"))
    items = [json.loads(line) for line in (home / "items" / "wfcrawl" / "workflow" / f"{job}.jl").read_text().splitlines()]
    assert {t: sum(1 for i in items if i["_type"] == t) for t in ("product", "seller")} == {"product": 7, "seller": 2}
    assert {i["_meta"]["workflow"] for i in items} == {"shop"}
    # The outcome line of the summary, and where the items went (scrapyd's feed).
    assert "INFO: Workflow shop SUCCEEDED (finished): 14 pages, 9 items, 0 failed pages" in log
    assert re.search(r"9 items went to: file://\S+/items/wfcrawl/workflow/" + job + r"\.jl \(jsonlines\)", log), log[-2000:]
    assert "Dumping Scrapy stats" not in log

    # A broken document: the job log holds its located problems (not only scrapyd's own log).
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    job = schedule(url, home, workflow=str(broken))
    log = job_log(home, job)
    assert "The crawl does not start (exit status 2):" in log
    assert f"{broken}:6:36: $.phases.a.nodes[0].css: invalid CSS selector 'a[': Expected ident or '*', got <EOF at 2>" in log
    assert f"{broken}:8:25: $.phases.a.transitions[0].to: unknown phase 'b'; phases: a" in log


def test_a_deployed_egg_runs_instead_of_an_installed_wfcrawl(
    scrapyd_venv: Path, server: MockServer, tmp_path: Path,
) -> None:
    """A wfcrawl importable on the host (on sys.path before the egg, as site-packages is) does
    not shadow the egg: the egg's settings module (wfcrawl_scrapyd) puts the egg first."""
    installed = tmp_path / "site"
    shutil.copytree(project_copy(tmp_path, "installed", "0.1.0+installed", "http://unused") / "wfcrawl",
                    installed / "wfcrawl", symlinks=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "SCRAPY_SETTINGS_MODULE")}
    env["PYTHONPATH"] = str(installed)
    proc, url = start_scrapyd(scrapyd_venv, tmp_path / "scrapyd", env)
    try:
        home = tmp_path / "scrapyd"
        deploy(project_copy(tmp_path, "new", "0.1.0+deployed", url), "7", tmp_path / "wfcrawl-7.egg")
        job = schedule(url, home, workflow="shop", base_url=server.url)
        log = job_log(home, job)
        ran = re.search(r"with wfcrawl (\S+) from (\S+)", log)
        assert ran is not None and ran.groups() == ("0.1.0+deployed", str(home / "eggs" / "wfcrawl" / "7.egg")), log[-3000:]
        assert "INFO: Workflow shop SUCCEEDED (finished)" in log
    finally:
        proc.terminate()
        proc.wait(timeout=30)
