"""ThreadWorker, Scrapy's timers and both retry forms on a real reactor (in a child process:
the reactor cannot be restarted in the test process)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = r'''
import json, logging, threading, time
from scrapy.utils.reactor import install_reactor
install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
from scrapy.utils.defer import deferred_from_coro
from twisted.internet import reactor
from wfcrawl.exceptions import RetryAbortedError
from wfcrawl.utils.retry import RetryPolicy, async_retrying, retrying
from wfcrawl.utils.threads import ThreadWorker
from scrapy.utils.asyncio import call_later, sleep

log = logging.getLogger("check")
out = {}


async def main():
    worker = ThreadWorker("check-worker")
    worker.start()
    main_thread = threading.get_ident()
    out["thread"] = await worker.run(lambda: (threading.current_thread().name, threading.get_ident() != main_thread))
    order = []
    calls = [worker.call(order.append, i) for i in range(5)]
    for d in calls:
        await worker.run(lambda: None)
    out["order"] = order

    # Retries in the worker thread, reported on the reactor thread.
    reports, failures = [], [OSError("down"), OSError("still down")]
    def flaky():
        if failures:
            raise failures.pop(0)
        return "written"
    def on_retry(exc, delay):
        reports.append((type(exc).__name__, delay, threading.get_ident() == main_thread))
    retry = retrying(RetryPolicy(0.01, 0.02), what="Write failed", log=log, on_retry=on_retry,
                     hop=ThreadWorker.to_reactor)
    out["retried"] = await worker.run(retry, flaky)
    out["reports"] = reports

    # An abort set by a reactor timer ends an hour-long wait.
    abort = threading.Event()
    stuck = retrying(RetryPolicy(3600, 3600), what="Upload failed", log=log, abort=abort)
    call_later(0.05, abort.set)
    try:
        await worker.run(stuck, lambda: (_ for _ in ()).throw(OSError("gone")))
    except RetryAbortedError as exc:
        out["aborted"] = str(exc)

    # Reactor timers: a cancelled call never runs, sleep returns.
    fired = []
    call_later(0.01, fired.append, "kept")
    call_later(0.01, fired.append, "cancelled").cancel()
    await sleep(0.05)
    out["fired"] = fired

    # Coroutine retries wait on reactor timers and stop before a deadline (set, as at a
    # crawl's close, after the second attempt: no wait may end after it).
    attempts = []
    async def post():
        attempts.append(len(attempts) + 1)
        raise ConnectionError("refused")
    deadline = lambda: None if len(attempts) < 2 else time.monotonic()
    try:
        await async_retrying(RetryPolicy(0.01, 1.0), what="Post failed", log=log, deadline=deadline)(post)
    except ConnectionError as exc:
        out["async"] = [str(exc), attempts]
    worker.stop()
    out["stopped"] = str(await worker.call(lambda: 1).addErrback(lambda f: f.value))


def done(_):
    print(json.dumps(out))
    reactor.stop()


def failed(f):
    print(f.getTraceback())
    reactor.stop()


reactor.callWhenRunning(lambda: deferred_from_coro(main()).addCallbacks(done, failed))
reactor.run()
'''


def test_worker_timers_and_retries_on_the_reactor() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["thread"] == ["PoolThread-check-worker-0", True]
    assert out["order"] == [0, 1, 2, 3, 4]  # one thread: calls run in submission order
    assert out["retried"] == "written"
    assert out["reports"] == [["OSError", 0.01, True], ["OSError", 0.02, True]]  # counted on the reactor thread
    assert out["aborted"] == "Upload failed"
    assert out["fired"] == ["kept"]
    assert out["async"] == ["refused", [1, 2]]
    assert out["stopped"] == "check-worker: the worker thread is not running"
