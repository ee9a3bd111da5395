"""What the fleet page shows: the shared crawl state in Redis, read only.

For each running execution, the keys of its run (:class:`wfcrawl.distributed.config.Keys`):
requests queued and leased (:meth:`wfcrawl.distributed.ops.LeaseStore.counts`), the
instances holding leases (:meth:`~wfcrawl.distributed.ops.LeaseStore.owners`), the
instances recorded in the execution store, and per download slot (domain) how long
the next request must wait for its rate limit (the ``rate:<slot>`` keys hold the
next send time, in microseconds of Redis's clock). Nothing here writes to Redis.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from wfcrawl.distributed.config import Keys
from wfcrawl.distributed.ops import LeaseStore
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.storage.executions import Execution, ExecutionStore

#: Rate keys read per run (a crawl of many domains shows the busiest first).
MAX_SLOTS = 50


@dataclass
class Run:
    execution: Execution
    queued: int = 0
    leased: int = 0
    #: instance id -> leases it holds
    leases: dict[str, int] = field(default_factory=dict)
    #: instances recorded in the store: (instance, status)
    instances: list[tuple[str, str]] = field(default_factory=list)
    #: (slot, seconds until its next request may be sent), longest first
    waits: list[tuple[str, float]] = field(default_factory=list)
    problem: str | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_run(client: Any, prefix: str, store: ExecutionStore, execution: Execution) -> Run:
    run = Run(execution)
    run.instances = [(i.instance, i.status) for i in store.instances(execution.id)]
    try:
        keys = Keys.for_run(prefix, execution.workflow, execution.id)
    except ConfigurationError as exc:
        run.problem = str(exc)
        return run
    leases = LeaseStore(client, keys, instance="dashboard", lease_ttl=1)
    run.queued, run.leased = leases.counts()
    run.leases = dict(Counter(leases.owners().values()).most_common())
    seconds, micros = client.time()
    now = int(seconds) * 1_000_000 + int(micros)
    rate_prefix = keys.rate("")
    names = []
    for name in client.scan_iter(match=keys.pattern.removesuffix("*") + "rate:*", count=200):
        names.append(_text(name))
        if len(names) >= MAX_SLOTS:
            break
    if names:
        values = client.mget(names)
        for name, value in zip(names, values, strict=True):
            if value is not None:
                run.waits.append((name[len(rate_prefix):], max(0.0, (int(value) - now) / 1_000_000)))
        run.waits.sort(key=lambda w: (-w[1], w[0]))
    return run


def read_fleet(client: Any, prefix: str, store: ExecutionStore) -> tuple[list[Run], list[str]]:
    """(the runs of every running execution, instances with leases across them)."""
    runs = [read_run(client, prefix, store, e) for e in store.list(status="running", limit=100)]
    alive = sorted({i for r in runs for i in r.leases} | {i for r in runs for i, s in r.instances if s == "running"})
    return runs, alive
