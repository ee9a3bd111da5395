"""Real local services for storage tests and benchmarks (no mocks).

- :class:`TempDatabase`: a database of its own on an existing server, dropped at exit;
- :class:`PgBouncer`: a PgBouncer (transaction pooling) in front of a server;
- :class:`PrivatePostgres`: a throw-away PostgreSQL cluster (``initdb`` + ``pg_ctl``)
  that a test may stop and start, as a database restart mid-crawl;
- :class:`GcsEmulator`: gcp-storage-emulator in this process, on a port the
  kernel chose, that can be told to fail the next uploads.

PgBouncer and PostgreSQL refuse to run as root: as root they run as the
``postgres`` user (``pgbouncer -u``, ``runuser``). Ports for them come from the
kernel (bind to port 0); readiness is polled with a deadline, never slept on.
"""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any


def _pg_bin() -> Path:
    """PostgreSQL's server binaries: $WFCRAWL_PG_BIN, else Debian's newest
    /usr/lib/postgresql/<version>/bin, else `pg_config --bindir`."""
    if os.environ.get("WFCRAWL_PG_BIN"):
        return Path(os.environ["WFCRAWL_PG_BIN"])
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if debian:
        return debian[-1]
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return Path("/usr/bin")
    return Path(out)


PG_BIN = _pg_bin()
SERVICE_USER = "postgres"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check`` until it is true; ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def can_connect(dsn: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(dsn, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


def _as_service_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _service_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, SERVICE_USER, SERVICE_USER)
    return path


def dsn_for(host: str, port: int, dbname: str, user: str = "postgres") -> str:
    return f"postgresql://{user}@{host}:{port}/{dbname}"


class TempDatabase:
    """``CREATE DATABASE wfcrawl_test_<random>`` on the server of ``admin_dsn``."""

    def __init__(self, admin_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres") -> None:
        import psycopg2.extensions

        self.admin_dsn = admin_dsn
        self.name = f"wfcrawl_test_{uuid.uuid4().hex[:10]}"
        params = psycopg2.extensions.parse_dsn(admin_dsn)
        self.host, self.port = params.get("host", "127.0.0.1"), int(params.get("port", 5432))
        self.dsn = dsn_for(self.host, self.port, self.name, params.get("user", "postgres"))

    def _admin(self, statement: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.admin_dsn, connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def __enter__(self) -> TempDatabase:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class PgBouncer:
    """PgBouncer in transaction pooling mode on 127.0.0.1, any database of the upstream server."""

    def __init__(
        self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432, *, pool_size: int = 20,
        template: Path | None = None, host: str = "127.0.0.1", settings: dict[str, str] | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.pool_size = pool_size
        self.template = template  # a pgbouncer.ini whose [pgbouncer] settings are kept
        self.host = host  # listen address
        self.settings = settings or {}  # [pgbouncer] settings over the defaults (or the template's)
        self.dir = _service_dir("wfcrawl-pgbouncer-")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def dsn(self, dbname: str) -> str:
        return dsn_for(self.host, self.port, dbname)

    def _config(self) -> Path:
        (self.dir / "users.txt").write_text(f'"{SERVICE_USER}" ""\n')
        settings: dict[str, str] = {
            "pool_mode": "transaction", "max_client_conn": "1000", "default_pool_size": str(self.pool_size),
            "server_reset_query": "", "ignore_startup_parameters": "extra_float_digits",
        }
        if self.template is not None:
            parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
            parser.read(self.template)
            settings = dict(parser["pgbouncer"])
        settings.update(self.settings)
        settings.update({
            "listen_addr": self.host, "listen_port": str(self.port), "unix_socket_dir": "",
            "auth_type": "trust", "auth_file": str(self.dir / "users.txt"),
            "logfile": str(self.dir / "pgbouncer.log"), "pidfile": "",
        })
        config = self.dir / "pgbouncer.ini"
        config.write_text(
            f"[databases]\n* = host={self.upstream[0]} port={self.upstream[1]}\n[pgbouncer]\n"
            + "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        if os.geteuid() == 0:
            for path in self.dir.iterdir():
                shutil.chown(path, SERVICE_USER, SERVICE_USER)
        return config

    def __enter__(self) -> PgBouncer:
        for _ in range(5):  # another process may take the port between bind and start
            self.port = free_port(self.host)
            cmd = ["pgbouncer", str(self._config())]
            if os.geteuid() == 0:
                cmd[1:1] = ["-u", SERVICE_USER]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: self.proc.poll() is not None or can_connect(self.dsn("postgres")), 15, "PgBouncer")  # type: ignore[union-attr]
            except TimeoutError:
                self.__exit__()
                raise
            if self.proc.poll() is None:
                return self
        raise RuntimeError(f"PgBouncer did not start; see {self.dir / 'pgbouncer.log'}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL cluster of its own (trust auth, fsync off), stopped and started at will."""

    def __init__(self, host: str = "127.0.0.1", *, max_connections: int = 100) -> None:
        self.dir = _service_dir("wfcrawl-pg-")
        self.data = self.dir / "data"
        self.port = 0
        self.host = host  # listen address
        self.max_connections = max_connections

    def dsn(self, dbname: str = "postgres") -> str:
        return dsn_for(self.host, self.port, dbname)

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(_as_service_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        # fsync off is safe for "crashes" of the server process (the OS keeps the
        # WAL); synchronous_commit must stay on or a crash loses acknowledged commits.
        options = (f"-p {self.port} -c listen_addresses={self.host} -k {self.dir} -c fsync=off"
                   f" -c full_page_writes=off -c max_connections={self.max_connections}")
        self._pg_ctl("-w", "-t", "60", "-l", str(self.dir / "server.log"), "-o", options, "start")

    def running(self) -> bool:
        status = subprocess.run(_as_service_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return status.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clean) or ``immediate`` (like a crash: no shutdown checkpoint)."""
        self._pg_ctl("-w", "-m", mode, "stop")

    def __enter__(self) -> PrivatePostgres:
        subprocess.run(
            _as_service_user([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", SERVICE_USER,
                              "--auth=trust", "--no-sync", "-E", "UTF8"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(5):
            self.port = free_port(self.host)
            try:
                self.start()
                return self
            except subprocess.CalledProcessError:
                continue  # port taken meanwhile
        raise RuntimeError(f"PostgreSQL did not start; see {self.dir / 'server.log'}")

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)


class GcsEmulator:
    """gcp-storage-emulator (in memory) serving on 127.0.0.1:<kernel-chosen port> in a thread.

    ``fail_uploads(n, skip=k)`` makes ``n`` object uploads (after ``k``) answer 403 (a failure
    gcsfs does not retry itself, so the caller's retry logic is what is tested).
    """

    def __init__(self) -> None:
        self._failures = self._skip = 0
        self._lock = threading.Lock()
        self.failed: list[str] = []
        self.url = ""

    def fail_uploads(self, count: int, *, skip: int = 0) -> None:
        """Fail ``count`` uploads after letting the next ``skip`` ones through."""
        with self._lock:
            self._skip, self._failures = skip, count

    def _should_fail(self, path: str) -> bool:
        with self._lock:
            if not path.startswith("/upload/") or self._failures <= 0:
                return False
            if self._skip > 0:
                self._skip -= 1
                return False
            self._failures -= 1
            self.failed.append(path)
            return True

    def __enter__(self) -> GcsEmulator:
        from http import server as http_server

        from gcp_storage_emulator.server import RequestHandler
        from gcp_storage_emulator.storage import Storage

        emulator = self

        class Handler(RequestHandler):  # type: ignore[misc]
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                if emulator._should_fail(self.path):
                    body = b'{"error": {"code": 403, "message": "injected failure"}}'
                    self.send_response(403)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                super().do_POST()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.storage = Storage(use_memory_fs=True)
        # Single-threaded, like the emulator's own server (its storage is not thread-safe).
        self.httpd = http_server.HTTPServer(("127.0.0.1", 0), partial(Handler, self.storage))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="gcs-emulator", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def filesystem(self) -> Any:
        """A gcsfs filesystem on this emulator (for creating buckets and reading back)."""
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(endpoint_url=self.url, token="anon", project="test", skip_instance_cache=True)


def main() -> None:
    """``python -m tests.services gcs-emulator``: print ``URL=...`` and serve until killed."""
    import signal
    import sys

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    if sys.argv[1:] != ["gcs-emulator"]:
        raise SystemExit("usage: python -m tests.services gcs-emulator")
    with GcsEmulator() as emu:
        print(f"URL={emu.url}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    main()
