"""Redis operations of a distributed crawl, without Scrapy: one round trip each.

:class:`LeaseStore` is what the broker calls from its worker thread; tests and
tools call it directly. Every call is one ``EVALSHA`` (redis-py reloads the
script after a ``NOSCRIPT``, e.g. when Redis restarted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wfcrawl.distributed import lua
from wfcrawl.distributed.config import Keys


@dataclass(frozen=True)
class Push:
    """A request to enqueue: ``filter_args`` empty means ``dont_filter``."""

    score: int
    filter_args: tuple[bytes | int, ...]
    payload: bytes


@dataclass
class SyncBatch:
    """Everything one instance has to tell Redis, and what it asks for."""

    token: str = ""
    want: int = 0
    pushes: list[Push] = field(default_factory=list)
    releases: list[bytes] = field(default_factory=list)
    renewals: list[bytes] = field(default_factory=list)
    returns: list[bytes] = field(default_factory=list)
    touch: bool = False
    #: Put expired leases (of dead instances) back in the queue in this call.
    reap: bool = True
    #: List this instance's leases (after a call whose reply was lost).
    list_mine: bool = False

    def is_empty(self) -> bool:
        return not (self.pushes or self.releases or self.returns)


@dataclass(frozen=True)
class SyncResult:
    """What one sync did; ``leased`` (all instances' leases) is -1 unless ``queued`` is 0."""

    lost_state: bool
    token: str
    queued: int = 0
    leased: int = 0
    pushed: int = 0
    duplicates: int = 0
    released: int = 0
    requeued: int = 0
    returned: int = 0
    lost_leases: tuple[bytes, ...] = ()
    got: tuple[tuple[bytes, bytes], ...] = ()
    #: This instance's leases before ``got`` (only when the batch asked, ``list_mine``).
    mine: tuple[bytes, ...] = ()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LeaseStore:
    """The shared queue, leases, dupefilter and rate limits of one crawl run."""

    def __init__(self, client: Any, keys: Keys, *, instance: str, lease_ttl: float,
                 mode: str = "set", key_ttl: int = 0, lifo: bool = True) -> None:
        self.client = client
        self.keys = keys
        self.instance = instance
        self.ttl_ms = int(lease_ttl * 1000)
        self.mode = mode
        self.key_ttl = key_ttl
        self.order = "lifo" if lifo else "fifo"
        self._sync = client.register_script(lua.SYNC)
        self._reserve = client.register_script(lua.RESERVE)

    def sync(self, batch: SyncBatch, candidate: str = "") -> SyncResult:
        """Push, release, renew, return and lease in one atomic step."""
        args: list[Any] = [
            batch.token, candidate or batch.token or "-", self.instance, self.ttl_ms, batch.want,
            self.mode, self.key_ttl, 1 if batch.touch else 0, self.order, (1 if batch.reap else 0) + (2 if batch.list_mine else 0),
            len(batch.pushes),
        ]
        for push in batch.pushes:
            args += [push.score, len(push.filter_args), *push.filter_args, push.payload]
        for members in (batch.releases, batch.renewals, batch.returns):
            args.append(len(members))
            args.extend(members)
        reply = self._sync(keys=self.keys.sync_keys(), args=args)
        if _s(reply[0]) == "lost":
            return SyncResult(lost_state=True, token=_s(reply[1]))
        got = reply[10]
        return SyncResult(
            lost_state=False, token=_s(reply[1]), queued=int(reply[2]), leased=int(reply[3]),
            pushed=int(reply[4]), duplicates=int(reply[5]), released=int(reply[6]),
            requeued=int(reply[7]), returned=int(reply[8]), lost_leases=tuple(reply[9]),
            got=tuple((got[i], got[i + 1]) for i in range(0, len(got), 2)), mine=tuple(reply[11]),
        )

    def reserve(self, slot: str, delay: float) -> float:
        """Reserve the next send time of ``slot`` (``delay`` apart); seconds to wait."""
        return int(self._reserve(keys=[self.keys.rate(slot)], args=[int(delay * 1_000_000)])) / 1_000_000

    # ---------------------------------------------------------------- inspection

    def counts(self) -> tuple[int, int]:
        """(queued, leased) right now."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(self.keys.queue)
        pipe.zcard(self.keys.leases)
        queued, leased = pipe.execute()
        return int(queued), int(leased)

    def owners(self) -> dict[bytes, str]:
        """Lease member -> instance id, for every outstanding lease."""
        return {k: _s(v) for k, v in self.client.hgetall(self.keys.owners).items()}

    def delete_run(self, batch_size: int = 500) -> int:
        """Delete every key of this run (an operator's action, never done by a crawl)."""
        deleted = 0
        names: Sequence[Any] = []
        for name in self.client.scan_iter(match=self.keys.pattern, count=batch_size):
            names = [*names, name]
            if len(names) >= batch_size:
                deleted += int(self.client.delete(*names))
                names = []
        if names:
            deleted += int(self.client.delete(*names))
        return deleted
