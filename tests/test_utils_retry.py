"""The retry policy (wfcrawl.utils.retry) without a reactor: blocking calls retried in this thread."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import tenacity

from wfcrawl.exceptions import RetryAbortedError
from wfcrawl.utils.retry import RetryPolicy, retrying

log = logging.getLogger("tests.retry")


class Flaky:
    """Fails with the given exceptions, in order, then returns ``"done"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, value: str) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return f"done {value}"


def test_retries_back_off_exponentially_and_log_each_retry_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, float]] = []
    flaky = Flaky(OSError("disk on fire\nsecond line"), ConnectionError(), OSError("again"), OSError("and again"))
    retry = retrying(RetryPolicy(0.001, 0.004), what="Write failed", log=log,
                     on_retry=lambda exc, delay: seen.append((type(exc).__name__, delay)),
                     detail=lambda: ", 3 rows held", extra={"component": "test"})
    with caplog.at_level(logging.WARNING, logger="tests.retry"):
        assert retry(flaky, "x") == "done x"
    assert flaky.calls == 5
    assert seen == [("OSError", 0.001), ("ConnectionError", 0.002), ("OSError", 0.004), ("OSError", 0.004)]
    assert [r.getMessage() for r in caplog.records] == [
        "Write failed (OSError: disk on fire); retrying in 0.0s, 3 rows held",
        "Write failed (ConnectionError: ConnectionError); retrying in 0.0s, 3 rows held",
        "Write failed (OSError: again); retrying in 0.0s, 3 rows held",
        "Write failed (OSError: and again); retrying in 0.0s, 3 rows held",
    ]
    assert {getattr(r, "component", None) for r in caplog.records} == {"test"}


def test_the_last_error_is_raised_as_it_is_after_the_attempts() -> None:
    flaky = Flaky(*(ValueError(f"bad {i}") for i in range(5)))
    with pytest.raises(ValueError, match=r"^bad 2$"):
        retrying(RetryPolicy(0.001, 0.001, attempts=3), what="Call failed", log=log)(flaky, "x")
    assert flaky.calls == 3


def test_errors_not_worth_retrying_are_raised_at_once(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(KeyError("row"))
    retry = retrying(RetryPolicy(0.001, 0.001), what="Call failed", log=log,
                     retry_if=lambda exc: not isinstance(exc, KeyError))
    with pytest.raises(KeyError):
        retry(flaky, "x")
    assert flaky.calls == 1 and caplog.records == []


def test_an_abort_stops_a_wait_and_any_further_attempt() -> None:
    abort = threading.Event()
    flaky = Flaky(OSError("down"), OSError("down"))
    # An hour's wait: the abort set while the call waits (here by the retry report) ends it.
    retry = retrying(RetryPolicy(3600, 3600), what="Write failed", log=log, abort=abort,
                     on_retry=lambda exc, delay: abort.set())
    with pytest.raises(RetryAbortedError, match=r"^Write failed$"):
        retry(flaky, "x")
    assert flaky.calls == 1
    with pytest.raises(RetryAbortedError):
        retry(flaky, "x")  # aborted before: no attempt at all
    assert flaky.calls == 1


def test_reports_can_be_handed_to_another_thread() -> None:
    handed: list[Any] = []
    retry = retrying(RetryPolicy(0.001, 0.001), what="Write failed", log=log, hop=handed.append,
                     on_retry=lambda exc, delay: None)
    assert retry(Flaky(OSError("down")), "y") == "done y"
    assert len(handed) == 1 and callable(handed[0])  # the report runs where the hop sends it


def state(attempt: int, upcoming: float = 0.0) -> tenacity.RetryCallState:
    s = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    s.attempt_number = attempt
    s.upcoming_sleep = upcoming
    return s


def test_policy_waits_jitter_and_deadline() -> None:
    assert [RetryPolicy(0.5, 30).wait()(state(n)) for n in (1, 2, 3, 7, 8)] == [0.5, 1.0, 2.0, 30, 30]
    jittered = [RetryPolicy(1, 1, jitter=0.5).wait()(state(1)) for _ in range(50)]
    assert all(1 <= w <= 1.5 for w in jittered) and len(set(jittered)) > 1
    deadline: list[float | None] = [None]
    stop = RetryPolicy(1, 1).stop(lambda: deadline[0])
    assert stop(state(1, upcoming=10)) is False  # no deadline yet (a crawl still running)
    deadline[0] = time.monotonic() + 3600
    assert (stop(state(1, upcoming=10)), stop(state(1, upcoming=7200))) == (False, True)
    assert RetryPolicy(1, 1, attempts=2).stop()(state(2)) is True
