"""The two places where the distributed scheduler reads Scrapy's engine internals.

Used on purpose, and checked when the crawl starts (:func:`check_engine`):

- ``engine._slot.inprogress`` is the set of requests the engine has taken from
  the scheduler and not finished. Scrapy removes a request only after its
  download, its callback or errback, every request it yielded (scheduled) and
  every item it yielded (through the pipelines), or after a redirect or retry
  was scheduled in its place. It is the only exact "this request is done": the
  public signals miss errback output, redirects dropped by the offsite filter
  and item processing.
- ``engine._slot.nextcall`` wakes the engine when new work arrives; otherwise an
  idle engine only looks at the scheduler every 5 s (its heartbeat).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from scrapy import Request

from wfcrawl.exceptions import ConfigurationError


def _slot(engine: Any) -> Any:
    return getattr(engine, "_slot", None)


def check_engine(engine: Any) -> None:
    slot = _slot(engine)
    if not isinstance(getattr(slot, "inprogress", None), set) or not hasattr(getattr(slot, "nextcall", None), "schedule"):
        raise ConfigurationError(
            "wfcrawl's Redis scheduler needs Scrapy's engine._slot.inprogress and .nextcall "
            "(Scrapy 2.13 to 2.19); this Scrapy version does not have them"
        )


def in_progress(engine: Any) -> Container[Request] | None:
    """The requests the engine is working on; None when it has no open spider."""
    return getattr(_slot(engine), "inprogress", None)


def wake(engine: Any) -> None:
    nextcall = getattr(_slot(engine), "nextcall", None)
    if nextcall is not None:
        nextcall.schedule()
