"""Shared pieces of the launcher tests (tests/test_launcher_*.py, tests/test_web_*.py): real
PostgreSQL stores in a schema of their own, each execution store in turn, launchers with test settings, the web application
served by uvicorn on a free port, an HTTP client, problem details as the API answers them,
OIDC token signing with a local certificate server, and polling with a deadline.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from tests.conftest import require_service
from wfcrawl.launcher.config import LauncherConfig, launcher_settings
from wfcrawl.launcher.launch import Launcher
from wfcrawl.storage.executions import FINAL_STATUSES, Execution

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SHOP = (Path(__file__).resolve().parent.parent / "workflows" / "shop.yaml").read_text()
#: What workflows/shop.yaml finds on the fixture shop (tests/sites/shop/EXPECTED.md).
SHOP_ITEMS = {"wfcrawl/items/product": 7, "wfcrawl/items/seller": 2}


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _postgres_up() -> bool:
    import psycopg2

    try:
        psycopg2.connect(PG_DSN, connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    return True


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of the test's own (dropped afterwards)."""
    require_service("PostgreSQL", _postgres_up(), PG_DSN)
    import psycopg2

    schema = f"launcher_test_{uuid.uuid4().hex[:10]}"
    yield schema
    conn = psycopg2.connect(PG_DSN)
    with conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()


@pytest.fixture
def pg_store(pg_schema: str) -> Iterator[Any]:
    from wfcrawl.storage.postgres.executions import PostgresExecutionStore

    store = PostgresExecutionStore(PG_DSN, schema=pg_schema)
    yield store
    store.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def execution_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each ExecutionStore (and AuditLog) in turn: memory, a SQLite file, PostgreSQL."""
    from wfcrawl.storage.executions import MemoryExecutionStore
    from wfcrawl.storage.sqlite.executions import SQLiteExecutionStore

    if request.param == "memory":
        yield MemoryExecutionStore()
    elif request.param == "sqlite":
        store = SQLiteExecutionStore(tmp_path / "executions.sqlite3")
        yield store
        store.close()
    else:
        yield request.getfixturevalue("pg_store")


def launch_settings(tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "WFCRAWL_LAUNCHER_WORKDIR": str(tmp_path / "executions"),
        # The crawls have no store of their own: their items go to the default sink.
        "WFCRAWL_LAUNCHER_ITEMS_DIR": str(tmp_path / "items"),
        # The fixture servers listen on loopback: allowed, as an operator would allow a network.
        "WFCRAWL_SSRF_ALLOWED_NETWORKS": ["127.0.0.0/8"],
        "WFCRAWL_LAUNCHER_POLL_INTERVAL": 0.2,
        "WFCRAWL_LAUNCHER_KILL_TIMEOUT": 10,
        "WFCRAWL_LAUNCHER_FORWARD_LOGS": False,
        **overrides,
    }
    return launcher_settings(values)


def make_launcher(tmp_path: Path, store: Any, registry: Any = None, **overrides: Any) -> Launcher:
    return Launcher(LauncherConfig.from_settings(launch_settings(tmp_path, **overrides)), store, registry)


def final(store: Any, execution_id: str, timeout: float = 60) -> Execution:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (e := store.get(execution_id)) is not None and e.status in FINAL_STATUSES and e,
        timeout, f"execution {execution_id} to end",
    )


def web_server(tmp_path: Path, launcher: Launcher, keys: list[str], *, push: Any = None,
               token_login: bool = False, redis: Any = None, redis_prefix: str = "wfcrawl", **overrides: Any) -> Any:
    """The application of ``wfcrawl serve`` for ``launcher``, served on 127.0.0.1:0 in a thread."""
    from wfcrawl.web.app import asgi, create_app
    from wfcrawl.web.auth import ApiKeyAuth, parse_api_keys
    from wfcrawl.web.config import WebConfig
    from wfcrawl.web.server import WebServer
    from wfcrawl.web.services import Services

    config = WebConfig.from_settings(launch_settings(tmp_path, **overrides))
    services = Services(launcher, launcher.registry, ApiKeyAuth(parse_api_keys(keys)), config, push=push,  # type: ignore[arg-type]
                        token_login=token_login, redis=redis, redis_prefix=redis_prefix)
    return WebServer(asgi(create_app(services), config.root_path), config).start()


def problem(status: int, detail: str, kind: str | None = None, **extensions: Any) -> dict[str, Any]:
    """The problem details (RFC 9457) the application answers with."""
    from http import HTTPStatus

    from wfcrawl.web.problems import TITLES

    return {"type": f"urn:wfcrawl:problem:{kind}" if kind else "about:blank",
            "title": TITLES[kind] if kind else HTTPStatus(status).phrase,
            "status": status, "detail": detail, **extensions}


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    """(status, headers (lower-case names), decoded JSON body or None)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None and not request.has_header("Content-type"):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            status, raw_headers, content = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw_headers, content = exc.code, exc.headers, exc.read()
    resp_headers = {name.lower(): value for name, value in raw_headers.items()}
    return status, resp_headers, json.loads(content) if content else None


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class SmallServer:
    """A ThreadingHTTPServer on 127.0.0.1:0 with a handler function ``(path) -> (status, headers, body)``."""

    def __init__(self, respond: Callable[[str], tuple[int, dict[str, str], bytes]]) -> None:
        outer = self
        self.paths: list[str] = []

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                status, headers, body = respond(self.path)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class OIDCKeys:
    """Sign ID tokens like Google does for push subscriptions, with a key of our own,
    and serve its certificate the way https://www.googleapis.com/oauth2/v1/certs does."""

    def __init__(self, kid: str = "test-key") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wfcrawl test")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
                .sign(self.key, hashes.SHA256()))
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.key_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        body = json.dumps({kid: self.cert_pem}).encode()
        self.server = SmallServer(lambda path: (200, {"Content-Type": "application/json",
                                                      "Cache-Control": "public, max-age=300"}, body))
        self.certs_url = self.server.url + "/oauth2/v1/certs"

    def token(self, *, key_pem: str | None = None, **claims: Any) -> str:
        from google.auth import crypt, jwt

        now = int(time.time())
        payload = {"iss": "https://accounts.google.com", "iat": now, "exp": now + 600,
                   "email_verified": True, **claims}
        signer = crypt.RSASigner.from_string(key_pem or self.key_pem, key_id=self.kid)  # type: ignore[no-untyped-call]
        token: bytes = jwt.encode(signer, payload)  # type: ignore[no-untyped-call]
        return token.decode()

    def close(self) -> None:
        self.server.close()
