"""`wfcrawl serve` as a public server: load, idle and slow clients, body limits, chunked bodies,
problem details, proxies and root paths, the SIGTERM stop, the one-time key without keys.

Everything runs against the real application on uvicorn (127.0.0.1:0); clients are raw
sockets or http.client where the bytes on the wire matter. Bounds (time-outs) are given
small values so that each case ends quickly; the assertions are on outcomes, not timings,
except the SIGTERM stop, whose 10 s are Cloud Run's contract.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from tests.launcher_support import http, make_launcher, problem, wait_until, web_server
from tests.mockserver import MockServer
from wfcrawl.launcher.registry import MemoryWorkflowRegistry
from wfcrawl.storage.executions import Execution, MemoryExecutionStore
from wfcrawl.web.auth import key_digest

KEY = "wfk_web-server-tests-0123456789abcdefghijklmnopqrst"
KEYS = [f"ops:{key_digest(KEY)}"]
AUTH = {"Authorization": f"Bearer {KEY}"}
DOCUMENT = (Path(__file__).resolve().parent.parent / "workflows" / "shop.yaml").read_text()


@dataclass
class Served:
    url: str
    port: int
    launcher: Any


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The app with small limits: 1 s for headers and bodies, 64 KiB bodies, 8 KiB headers."""
    launcher = make_launcher(tmp_path, MemoryExecutionStore(), MemoryWorkflowRegistry(bundled=True))
    server = web_server(tmp_path, launcher, KEYS, WFCRAWL_API_RATE_LIMIT=0, WFCRAWL_WEB_HEADER_TIMEOUT=1,
                        WFCRAWL_WEB_BODY_TIMEOUT=1, WFCRAWL_API_MAX_BODY_BYTES=64 * 1024,
                        WFCRAWL_WEB_MAX_HEADER_BYTES=8 * 1024)
    yield Served(server.url, server.port, launcher)
    server.stop()
    launcher.shutdown()


def connect(server: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


# ------------------------------------------------------------ load and idle connections


def test_200_parallel_requests_get_answers_no_resets_no_5xx(served: Served) -> None:
    def one(i: int) -> str:
        conn = HTTPConnection("127.0.0.1", served.port, timeout=60)
        try:  # a new connection each: what filled the old server's listen queue of 5
            conn.request("GET", "/v1/executions" if i % 2 else "/v1/workflows", headers=AUTH)
            return str(conn.getresponse().status)
        except OSError as exc:
            return type(exc).__name__
        finally:
            conn.close()

    with ThreadPoolExecutor(200) as pool:
        outcomes = Counter(pool.map(one, range(200)))
    assert outcomes == {"200": 200}


def test_300_idle_connections_do_not_stop_an_authenticated_request(served: Served) -> None:
    idle = [connect(served) for _ in range(300)]
    try:
        assert http("GET", served.url + "/v1/workflows", headers=AUTH)[0] == 200
        assert http("GET", served.url + "/healthz")[0::2] == (200, {"status": "ok", "running": 0})
        # Each idle connection is closed by the header deadline, without an answer.
        assert [read_all(sock) for sock in idle] == [b""] * 300
    finally:
        for sock in idle:
            sock.close()


def test_slow_headers_get_408_and_are_cut_off(served: Served) -> None:
    sock = connect(served)
    sock.sendall(b"GET /v1/workflows HTTP/1.1\r\nHost: x\r\n")
    try:
        # A header line now and then never completes the request (slowloris).
        for _ in range(20):
            time.sleep(0.2)
            sock.sendall(b"X-Slow: 1\r\n")
    except OSError:
        pass  # cut off while trickling
    status, headers, body = parse(read_all(sock))
    assert (status, headers["content-type"], headers["connection"]) == (408, "application/problem+json", "close")
    assert body == problem(408, "the request headers did not arrive within 1 s")


def test_oversized_headers_get_431(served: Served) -> None:
    sock = connect(served)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000)
    status, _, body = parse(read_all(sock))
    assert (status, body) == (431, problem(431, "the request line and headers are larger than 8192 bytes"))


def test_a_trickled_body_is_cut_off_with_408(served: Served) -> None:
    sock = connect(served)
    sock.sendall(f"POST /v1/validate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode())
    try:
        for _ in range(30):
            sock.sendall(b" ")
            time.sleep(0.2)
    except OSError:
        pass
    status, headers, body = parse(read_all(sock))
    assert (status, headers["connection"]) == (408, "close")
    assert body == problem(408, "the request body did not arrive within 1 s", "body-timeout")


def test_an_unauthenticated_trickled_body_is_answered_then_cut_off(served: Served) -> None:
    sock = connect(served)
    sock.sendall(b"POST /v1/executions HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n{")
    try:
        for _ in range(30):
            sock.sendall(b" ")
            time.sleep(0.2)
    except OSError:
        pass
    status, _, body = parse(read_all(sock))  # the 401 came at once; then the connection was closed
    assert (status, body) == (401, problem(401, "an API key is required (Authorization: Bearer KEY)"))


# ------------------------------------------------------------ bodies


def test_chunked_bodies_are_accepted_and_counted_against_the_limit(served: Served) -> None:
    body = json.dumps({"document": DOCUMENT}).encode()
    conn = HTTPConnection("127.0.0.1", served.port, timeout=60)
    conn.request("POST", "/v1/validate", body=iter([body[:100], body[100:]]), encode_chunked=True,
                 headers={**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    assert (response.status, json.loads(response.read())) == (200, {"valid": True, "name": "shop", "problems": []})
    conn.close()

    conn = HTTPConnection("127.0.0.1", served.port, timeout=60)
    big = (b"x" * 16384 for _ in range(8))  # 128 KiB, no Content-Length: refused as it passes 64 KiB
    conn.request("POST", "/v1/validate", body=big, encode_chunked=True,
                 headers={**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    assert (response.status, response.getheader("connection"), json.loads(response.read())) == (
        413, "close", problem(413, "the request body is larger than 65536 bytes"))
    conn.close()


def test_a_client_still_sending_a_refused_body_reads_the_refusal(served: Served) -> None:
    # The 413 is sent as soon as the headers declare too much; the client (like
    # http.client, which reads only after sending) sends its 512 KiB body anyway, after
    # the server has answered. The server reads and discards it (lingering close), so
    # the client's writes succeed and it reads the 413, not a connection reset.
    sock = connect(served)
    sock.sendall(f"POST /v1/validate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 524288\r\n\r\n".encode())
    time.sleep(0.3)  # answered and half-closed by now
    for _ in range(32):
        sock.sendall(b"x" * 16384)
    sock.shutdown(socket.SHUT_WR)
    status, headers, body = parse(read_all(sock))
    assert (status, headers["connection"], body) == (413, "close", problem(413, "the request body is larger than 65536 bytes"))


def test_api_bodies_are_json_whatever_their_content_type(served: Served) -> None:
    body = json.dumps({"document": DOCUMENT}).encode()
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):  # curl -d, ..., none
        headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
        conn = HTTPConnection("127.0.0.1", served.port, timeout=60)
        conn.request("POST", "/v1/validate", body=body, headers=headers)
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())["valid"]) == (200, True), content_type
        conn.close()


def test_a_declared_length_over_the_limit_is_refused_before_reading(served: Served) -> None:
    sock = connect(served)
    sock.sendall(f"POST /v1/validate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n".encode())
    status, headers, body = parse(read_all(sock))
    assert (status, headers["connection"], body) == (413, "close", problem(413, "the request body is larger than 65536 bytes"))


# ------------------------------------------------------------ problem details


def test_errors_are_problem_details_without_a_trace(served: Served, tmp_path: Path) -> None:
    status, headers, body = http("GET", served.url + "/v1/nothing-here", headers=AUTH)
    assert (status, headers["content-type"], body) == (
        404, "application/problem+json", problem(404, "nothing at /v1/nothing-here"))
    status, headers, body = http("DELETE", served.url + "/v1/workflows", headers=AUTH)
    assert (status, headers["allow"], body) == (405, "GET, POST", problem(405, "DELETE is not allowed here"))
    # Invalid requests: every problem located (a JSON pointer into the body, or the parameter).
    status, _, body = http("POST", served.url + "/v1/executions",
                           {"workflow": 7, "args": {"base_url": "http://x", "depth": "2"}}, headers=AUTH)
    assert (status, body) == (400, problem(400, "the request is invalid (see errors)", "invalid-request", errors=[
        {"detail": "Input should be a valid string", "type": "string_type", "pointer": "#/workflow"},
        {"detail": "Extra inputs are not permitted", "type": "extra_forbidden", "pointer": "#/args/depth"},
    ]))
    status, _, body = http("GET", served.url + "/v1/executions?limit=0", headers=AUTH)
    assert (status, body["errors"]) == (400, [
        {"detail": "Input should be greater than or equal to 1", "type": "greater_than_equal", "parameter": "limit"}])
    status, _, body = http("POST", served.url + "/v1/validate", raw=b'{"document": ', headers=AUTH)
    assert (status, body["errors"]) == (400, [
        {"detail": "the body is not JSON: Expecting value", "type": "json_invalid", "pointer": "#"}])
    status, _, body = http("POST", served.url + "/v1/executions", {"workflow": "nope"}, headers=AUTH)
    assert (status, body) == (422, problem(422, "no registered workflow named 'nope'", "launch-rejected", problems=[]))

    # An unexpected error (the execution store is unreachable): 500, logged here, nothing of it there.
    from wfcrawl.storage.postgres.executions import PostgresExecutionStore

    broken = make_launcher(tmp_path, PostgresExecutionStore("postgresql://postgres@127.0.0.1:1/nope", connect_timeout=1))
    server = web_server(tmp_path, broken, KEYS)
    try:
        status, headers, raw = http("GET", server.url + "/v1/executions", headers=AUTH)
    finally:
        server.stop()
    assert (status, headers["content-type"], raw) == (
        500, "application/problem+json", problem(500, "an internal error occurred; it has been logged"))


def test_every_documented_operation_answers_problems_as_documented(served: Served) -> None:
    spec = http("GET", served.url + "/openapi.json")[2]
    assert spec["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]
    operations = {f"{method.upper()} {path}": op for path, item in spec["paths"].items() for method, op in item.items()}
    assert sorted(operations) == [
        "GET /healthz", "GET /v1/executions", "GET /v1/executions/{execution_id}", "GET /v1/workflows",
        "GET /v1/workflows/{name}", "POST /v1/executions", "POST /v1/executions/{execution_id}/cancel",
        "POST /v1/validate", "POST /v1/workflows",
    ]
    for name, op in operations.items():
        errors = {code: r for code, r in op["responses"].items() if code >= "400"}
        assert all(list(r["content"]) == ["application/problem+json"] for r in errors.values()), name
        if name != "GET /healthz":
            assert {"400", "401", "429"} <= set(errors), name
            assert op["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}], name


# ------------------------------------------------------------ proxies and root path


def test_behind_a_reverse_proxy_under_a_root_path(tmp_path: Path) -> None:
    launcher = make_launcher(tmp_path, MemoryExecutionStore(), MemoryWorkflowRegistry())
    server = web_server(tmp_path, launcher, KEYS, WFCRAWL_WEB_ROOT_PATH="/crawls/")
    untrusted = web_server(tmp_path, launcher, KEYS, WFCRAWL_WEB_FORWARDED_ALLOW_IPS=["10.9.9.9"])
    try:
        # Whether the proxy strips the prefix or passes it on, the same app answers.
        assert http("GET", server.url + "/crawls/healthz")[0::2] == (200, {"status": "ok", "running": 0})
        assert http("GET", server.url + "/healthz")[0::2] == (200, {"status": "ok", "running": 0})
        assert http("GET", server.url + "/crawls/v1/workflows", headers=AUTH)[0] == 200
        assert http("GET", server.url + "/crawls/openapi.json")[2]["servers"] == [{"url": "/crawls"}]
        conn = HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/crawls/")
        response = conn.getresponse()
        assert (response.status, response.getheader("location")) == (303, "/crawls/login")
        response.read()
        conn.request("GET", "/login", headers={"X-Forwarded-Proto": "https"})  # prefix stripped, TLS at the proxy
        response = conn.getresponse()
        page = response.read().decode()
        cookie = response.getheader("set-cookie")
        assert cookie is not None and "; Path=/crawls/;" in cookie and "; Secure" in cookie
        assert 'href="/crawls/static/style.css"' in page and 'action="/crawls/login"' in page
        conn.request("GET", "/crawls/static/style.css")
        response = conn.getresponse()
        assert (response.status, response.getheader("content-type")) == (200, "text/css; charset=utf-8")
        response.read()
        conn.close()
        # A proxy header from an address that is not a trusted proxy is ignored.
        conn = HTTPConnection("127.0.0.1", untrusted.port, timeout=30)
        conn.request("GET", "/login", headers={"X-Forwarded-Proto": "https"})
        response = conn.getresponse()
        cookie = response.getheader("set-cookie")
        assert cookie is not None and "Secure" not in cookie and "; Path=/;" in cookie
        conn.close()
    finally:
        server.stop()
        untrusted.stop()


# ------------------------------------------------------------ the command


def start_serve(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], list[str]]:
    """``wfcrawl serve`` as a process; its first output lines (the URL, and a one-time key if any)."""
    proc = subprocess.Popen([sys.executable, "-m", "wfcrawl.cli", "serve", "--port", "0", *args], cwd=cwd,
                            env={**os.environ, "WFCRAWL_API_KEYS": "", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("wfcrawl launcher listening on "):
        proc.kill()
        raise AssertionError(first + (proc.stderr.read() if proc.stderr else ""))
    return proc, [first.rstrip("\n")]


def test_without_keys_it_serves_on_loopback_with_a_one_time_admin_key(tmp_path: Path) -> None:
    proc, lines = start_serve(["-s", f"WFCRAWL_LAUNCHER_WORKFLOWS_DIR={tmp_path}"], cwd=tmp_path)
    try:
        assert proc.stdout is not None
        lines += [proc.stdout.readline().rstrip("\n") for _ in range(4)]
        url = lines[0].split(" on ", 1)[1]
        key = lines[2].strip()
        assert url.startswith("http://127.0.0.1:") and key.startswith("wfk_") and len(key) == 47
        assert lines[1:] == [
            "No API keys are configured (WFCRAWL_API_KEYS): this run has a one-time admin key,",
            f"    {key}",
            "To sign in to the dashboard, open this URL in a browser on this machine:",
            f"    {url}/login?token={key}",
        ]
        assert http("GET", url + "/v1/workflows", headers={"X-API-Key": key})[0] == 200
        assert http("GET", url + "/v1/workflows", headers={"X-API-Key": key[:-1] + "x"})[0] == 401
        port = int(url.rsplit(":", 1)[1])
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/login?token={key}")  # the printed link signs in
        response = conn.getresponse()
        cookie = (response.getheader("set-cookie") or "").split(";", 1)[0]
        assert (response.status, response.getheader("location")) == (303, "/")
        response.read()
        conn.request("GET", "/", headers={"Cookie": cookie})
        response = conn.getresponse()
        assert response.status == 200 and 'title="Signed in with this API key">admin<' in response.read().decode()
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert (tmp_path / "wfcrawl.sqlite3").is_file()  # no DATABASE_URL: executions in the local file


def test_sigterm_stops_a_running_crawl_and_records_it_within_cloud_runs_10_s(
    tmp_path: Path, fresh_server: MockServer
) -> None:
    from wfcrawl.storage.sqlite.executions import SQLiteExecutionStore

    database = tmp_path / "executions.sqlite3"
    proc, lines = start_serve(["--host", "127.0.0.1", "-s", f"WFCRAWL_API_KEYS={KEYS[0]}",
                               "-s", f"WFCRAWL_SQLITE_PATH={database}", "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=127.0.0.0/8",
                               "-s", f"WFCRAWL_LAUNCHER_WORKDIR={tmp_path / 'work'}",
                               "-s", "WFCRAWL_LAUNCHER_POLL_INTERVAL=0.2"], cwd=tmp_path)
    url = lines[0].split(" on ", 1)[1]
    slow = ("name: slow\nobey_robots: false\nrate_limit: {concurrency: 1}\n"
            "start_urls: ['/slow/1?delay=1', '/slow/2?delay=1', '/slow/3?delay=1', '/slow/4?delay=1']\n"
            "phases: {page: {nodes: [{type: extract, item: page, fields: {n: p.n}}]}}\n")
    try:
        status, _, body = http("POST", url + "/v1/executions", {"document": slow, "args": {"base_url": fresh_server.url}},
                               headers=AUTH)
        assert status == 201, body
        execution_id = body["execution"]["id"]
        wait_until(lambda: any(p.startswith("/slow/1") for p in fresh_server.paths()), 60, "the first slow page")
    except BaseException:
        proc.kill()
        raise
    stopping = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    returncode = proc.wait(timeout=10)  # Cloud Run sends SIGKILL 10 s after SIGTERM
    assert (returncode, time.monotonic() - stopping < 10) == (0, True)
    store = SQLiteExecutionStore(database)
    execution = store.get(execution_id)
    store.close()
    # The crawl stopped by the launcher's shutdown: failed (interrupted), so that Pub/Sub
    # would run it again. Its process exits on its own (143: interrupted by SIGTERM), or is
    # killed when it is still exiting 2 s before the budget ends (a loaded machine).
    assert execution is not None and (execution.status, execution.finish_reason) == ("failed", "launcher_shutdown")
    killed = execution.stats["wfcrawl/launcher/killed"]
    assert (execution.stats["wfcrawl/launcher/exit_code"], [r["code"] for r in execution.reasons]) == (
        (-9, ["interrupted", "killed"]) if killed else (143, ["interrupted"]))
    assert execution.error is not None
    lines = execution.error.splitlines()
    assert lines[0] == "interrupted: stopped by the launcher (launcher_shutdown)"
    assert re.fullmatch(r"crawl exited with status (143|-9), (finish reason shutdown|no final stats \(it failed at "
                        r"start or was killed\)); stopped by the launcher: launcher_shutdown", lines[2 if killed else 1])


def test_executions_in_the_store_are_served_newest_first(served: Served) -> None:
    store = served.launcher.store
    for i, status in enumerate(["finished", "failed", "running", "degraded"]):  # finished: a record from before outcomes
        store.create(Execution(f"e{i}", "shop", status=status))
    listed = http("GET", served.url + "/v1/executions", headers=AUTH)[2]["executions"]
    assert [(e["id"], e["status"]) for e in listed] == [
        ("e3", "degraded"), ("e2", "running"), ("e1", "failed"), ("e0", "succeeded")]
