"""One ``scrapy crawl`` child process: its log, its stop, its exit.

A crawl always runs in a process of its own: the Twisted reactor cannot be
restarted, and a crawl that leaks memory or hangs must not take the launcher
with it. The child's stdout and stderr (Scrapy logs to stderr) go through a
pipe that a reader thread drains, so the child never blocks on a full pipe:
the last lines are kept for the execution record and, optionally, copied to
the launcher's log (Cloud Logging reads the container's output).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("wfcrawl.launcher.crawl")


class CrawlChild:
    """A started ``scrapy crawl`` process.

    :meth:`stop` asks Scrapy to stop gracefully (SIGTERM: Scrapy closes the
    spider with reason ``shutdown``, pipelines flush) and kills the process
    group (the crawl and its parse workers) if the crawl is still alive
    ``kill_timeout`` seconds later: a callback busy in C code (a regex, a huge
    document) never runs Python's SIGTERM handler, so SIGKILL is what ends it.
    """

    def __init__(
        self, execution_id: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path,
        log_tail_lines: int, forward_logs: bool,
    ) -> None:
        self.execution_id = execution_id
        self.argv = list(argv)
        self.stop_reason: str | None = None
        #: True once the crawl had to be killed (SIGKILL) after not stopping on SIGTERM.
        self.killed = False
        self._tail: deque[str] = deque(maxlen=max(log_tail_lines, 0))
        self._forward = forward_logs
        self._lock = threading.Lock()
        self._killer: threading.Timer | None = None
        self.process = subprocess.Popen(
            self.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace",
            # Its own session: a Ctrl-C meant for the launcher's terminal does not
            # reach the crawl; the launcher decides how a crawl stops.
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read, name=f"wfcrawl-crawl-log-{execution_id}", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        in_stats = False
        for line in self.process.stdout:
            line = line.rstrip("\n")
            # The final stats dump (~100 lines) is recorded as stats already: keep
            # the tail for the lines that explain what happened.
            if "Dumping Scrapy stats:" in line:
                in_stats = True
            elif in_stats:
                in_stats = not line.endswith("}")
            else:
                self._tail.append(line)
            if self._forward:
                logger.info("[%s] %s", self.execution_id, line)
        self.process.stdout.close()

    def wait(self, timeout: float | None) -> int | None:
        """The exit status, or None if still running after ``timeout`` seconds."""
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join()  # the whole log is read once the process is gone
        if self._killer is not None:
            self._killer.cancel()
        return returncode

    def stop(self, reason: str, kill_timeout: float) -> None:
        """Stop the crawl (idempotent: the first reason is kept)."""
        with self._lock:
            if self.stop_reason is not None or self.process.poll() is not None:
                return
            self.stop_reason = reason
            self.process.send_signal(signal.SIGTERM)
            self._killer = threading.Timer(kill_timeout, self._kill)
            self._killer.daemon = True
            self._killer.start()

    def _kill(self) -> None:
        if self.process.poll() is None:
            logger.warning("[%s] crawl did not stop after SIGTERM; killing it", self.execution_id)
            self.killed = True
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the group is the crawl's
            except OSError:
                self.process.kill()

    def log_tail(self) -> list[str]:
        return list(self._tail)
