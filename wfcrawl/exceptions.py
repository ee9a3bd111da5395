"""The exceptions wfcrawl raises.

Everything wfcrawl raises on purpose derives from :class:`WfcrawlError`, so an
embedding application can catch one type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class WfcrawlError(Exception):
    """Base class of every wfcrawl error."""


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem in a workflow document.

    ``kind`` is ``parse``, ``schema`` or ``semantic``; ``path`` is a JSON path
    (``$.phases.detail.nodes[0].css``); ``line``/``column`` are 1-based.
    """

    file: str
    line: int
    column: int
    path: str
    message: str
    kind: str = "schema"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"


class WorkflowError(WfcrawlError):
    """A workflow document cannot be used; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(problems))
        super().__init__(self.report())

    def report(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class ConfigurationError(WfcrawlError):
    """A setting or environment variable is wrong; the crawl must not start."""


class DatabaseUnreachableError(ConfigurationError):
    """A database could not be connected to (the message says which and why). At a
    crawl's start it stops the crawl like any misconfiguration; a tool that waits for
    the database to come back (``wfcrawl spill load``) retries it."""


class RetryAbortedError(WfcrawlError):
    """A retried operation was given up on before it succeeded: its abort event was set
    (a store's ``WFCRAWL_STORAGE_CLOSE_TIMEOUT`` expired, a closing crawl stopped waiting).
    What it carried is spilled or handed back by its owner, never dropped."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): for log lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
