"""Serving the application with uvicorn: limits, proxies, and a graceful stop on SIGTERM.

:class:`WebServer` binds its socket itself (so ``--port 0`` is known before it
serves, and the listen queue is ``WFCRAWL_WEB_BACKLOG``), then runs uvicorn with
the guarded protocol (:mod:`wfcrawl.web.protocol`: header deadline and size,
``limit_concurrency`` as problem details), keep-alive time-out, the forwarded
headers of trusted proxies only, and a shutdown bounded by
``WFCRAWL_WEB_SHUTDOWN_TIMEOUT``.

On SIGTERM (Cloud Run gives 10 s before SIGKILL) or SIGINT: the socket stops
accepting, ``on_stop`` runs at once in its own thread (``wfcrawl serve``: the
launcher stops its crawls and records them, so push requests waiting for them
are answered), in-flight requests are waited for, and whatever still runs when
the time is up is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable

import uvicorn

from wfcrawl.web.config import WebConfig
from wfcrawl.web.protocol import guarded_protocol

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        stopping = None
        if self.on_stop is not None:
            # Crawls stop while connections drain: a push request waiting for a crawl
            # is answered as soon as its crawl is recorded.
            stopping = asyncio.get_running_loop().run_in_executor(None, self.on_stop)
        await super().shutdown(sockets)
        if stopping is not None:
            await stopping


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


class WebServer:
    """``app`` served on ``host:port`` (0: a free port, see :attr:`url`)."""

    def __init__(self, app: object, config: WebConfig, host: str = "127.0.0.1", port: int = 0, *,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.host = host
        self.socket = _bind(host, port, config.backlog)
        uvicorn_config = uvicorn.Config(
            app, http=guarded_protocol(header_timeout=config.header_timeout,  # type: ignore[arg-type]
                                       max_header_bytes=config.max_header_bytes,
                                       limit_concurrency=config.limit_concurrency),
            backlog=config.backlog, timeout_keep_alive=config.keep_alive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=max(1, int(config.shutdown_timeout)),
            proxy_headers=True, forwarded_allow_ips=list(config.forwarded_allow_ips),
            # uvicorn's loggers propagate to the root logger, configured by the command.
            lifespan="off", log_config=None, log_level=None, access_log=False, server_header=False,
        )
        self.server = _Server(uvicorn_config, on_stop)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT (call from the main thread)."""
        self.server.run(sockets=[self.socket])

    def start(self) -> WebServer:
        """Serve in a thread (tests, tools); :meth:`stop` ends it."""
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                        name="wfcrawl-web", daemon=True)
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            self._thread.join(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join()
        self.socket.close()
