"""The ``WFCRAWL_REDIS_*`` settings, read once, and the Redis key namespace of a crawl run.

Every key of one crawl run lives under ``<prefix>:{<workflow>:<execution id>}:``.
The braces are a Redis Cluster hash tag: all keys of a run land in one slot, so
the Lua scripts that touch several of them also work on a cluster.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from scrapy.settings import BaseSettings

from wfcrawl.context import CrawlContext
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.settings.table import Config, setting

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

#: The largest Bloom filter one Redis string can hold (512 MB).
MAX_BLOOM_BITS = 2**32


@dataclass(frozen=True)
class BloomSize:
    """Bits and hash functions of a Bloom filter for ``capacity`` URLs at ``error_rate``."""

    bits: int
    hashes: int

    @classmethod
    def for_capacity(cls, capacity: int, error_rate: float) -> BloomSize:
        # capacity >= 1 and 0 < error_rate < 1: bounds of the settings table.
        # The textbook optimum: m = -n ln p / (ln 2)^2 bits, k = (m / n) ln 2 hashes.
        bits = math.ceil(-capacity * math.log(error_rate) / math.log(2) ** 2)
        hashes = max(1, round(bits / capacity * math.log(2)))
        if bits > MAX_BLOOM_BITS:
            raise ConfigurationError(
                f"a Bloom filter for {capacity} URLs at error rate {error_rate} needs {bits} bits, "
                f"more than one Redis string holds ({MAX_BLOOM_BITS}); lower the capacity or raise the error rate"
            )
        return cls(bits, hashes)


@dataclass(frozen=True)
class RedisCrawlConfig(Config):
    """How one process takes part in a distributed crawl (docs/distributed.md)."""

    #: Scrapy's CONCURRENT_REQUESTS (at least 1).
    concurrency: int
    #: Scrapy's knob for the crawl order: LIFO (its default) unless a FIFO queue is chosen.
    lifo: bool
    key_prefix: str = setting("WFCRAWL_REDIS_KEY_PREFIX")
    lease_ttl: float = setting("WFCRAWL_REDIS_LEASE_TTL")
    idle_poll: float = setting("WFCRAWL_REDIS_IDLE_POLL")
    flush_interval: float = setting("WFCRAWL_REDIS_FLUSH_INTERVAL")
    batch_delay: float = setting("WFCRAWL_REDIS_BATCH_DELAY")
    stall_warning: float = setting("WFCRAWL_REDIS_STALL_WARNING")
    prefetch: int = setting("WFCRAWL_REDIS_PREFETCH")
    dupefilter: str = setting("WFCRAWL_REDIS_DUPEFILTER")
    bloom_capacity: int = setting("WFCRAWL_REDIS_BLOOM_CAPACITY")
    bloom_error_rate: float = setting("WFCRAWL_REDIS_BLOOM_ERROR_RATE")
    key_ttl: int = setting("WFCRAWL_REDIS_KEY_TTL")
    unavailable_timeout: float = setting("WFCRAWL_REDIS_UNAVAILABLE_TIMEOUT")
    local_seen_max: int = setting("WFCRAWL_REDIS_LOCAL_SEEN_MAX")
    #: Hold a finished request's lease until its items are durable in every store.
    durable_release: bool = setting("WFCRAWL_REDIS_DURABLE_RELEASE")
    release_max_wait: float = setting("WFCRAWL_REDIS_RELEASE_MAX_WAIT")
    release_max_held: int = setting("WFCRAWL_REDIS_RELEASE_MAX_HELD")
    #: The Bloom filter's size in ``bloom`` mode (None: an exact set).
    bloom: BloomSize | None = field(init=False)

    @classmethod
    def from_settings(cls, settings: BaseSettings, **values: Any) -> RedisCrawlConfig:
        values.setdefault("concurrency", max(1, settings.getint("CONCURRENT_REQUESTS")))
        values.setdefault("lifo", "fifo" not in str(settings.get("SCHEDULER_MEMORY_QUEUE") or "").lower())
        return super().from_settings(settings, **values)

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.key_prefix):
            raise ConfigurationError(f"WFCRAWL_REDIS_KEY_PREFIX must match {_PREFIX.pattern}, not {self.key_prefix!r}")
        bloom = BloomSize.for_capacity(self.bloom_capacity, self.bloom_error_rate) if self.dupefilter == "bloom" else None
        object.__setattr__(self, "bloom", bloom)  # frozen: set once, here
        # A finished request's lease must not expire while its release waits in the
        # buffer (it is no longer renewed): a sixth of the TTL leaves a wide margin.
        object.__setattr__(self, "batch_delay", min(self.batch_delay, self.lease_ttl / 6))

    @property
    def renew_interval(self) -> float:
        # Three renewals per TTL: a live instance survives two lost round trips.
        return self.lease_ttl / 3


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one crawl run."""

    base: str

    @classmethod
    def for_run(cls, prefix: str, workflow: str, execution_id: str) -> Keys:
        for what, value in (("workflow name", workflow), ("execution id", execution_id)):
            if not _ID.match(value):
                raise ConfigurationError(
                    f"the {what} {value!r} cannot name Redis keys: use letters, digits, '_', '.' and '-' "
                    "(at most 128, starting with a letter or digit)"
                )
        return cls(f"{prefix}:{{{workflow}:{execution_id}}}:")

    @property
    def queue(self) -> str:  # ZSET member -> -priority
        return self.base + "queue"

    @property
    def data(self) -> str:  # HASH member -> serialized request
        return self.base + "data"

    @property
    def leases(self) -> str:  # ZSET member -> lease deadline (ms, Redis clock)
        return self.base + "leases"

    @property
    def owners(self) -> str:  # HASH member -> instance id (observability, tests)
        return self.base + "owners"

    @property
    def seq(self) -> str:
        return self.base + "seq"

    @property
    def seen(self) -> str:  # SET of fingerprints, or the Bloom filter's bits
        return self.base + "seen"

    @property
    def epoch(self) -> str:  # token of the run's state: missing/changed = state lost
        return self.base + "epoch"

    def rate(self, slot: str) -> str:
        return f"{self.base}rate:{slot}"

    def sync_keys(self) -> list[str]:
        return [self.queue, self.data, self.leases, self.owners, self.seq, self.seen, self.epoch]

    @property
    def pattern(self) -> str:
        """SCAN pattern of every key of the run (braces escaped for glob)."""
        return self.base.replace("{", "\\{").replace("}", "\\}") + "*"


def keys_for_spider(spider: Any, config: RedisCrawlConfig) -> Keys:
    """The keys of the crawl run ``spider`` takes part in.

    The run is named by the workflow (``spider.plan.name``; other spiders: their
    name) and ``spider.execution_id``, which every instance of one distributed
    crawl must be given (``-a execution_id=ID``): a generated id would make each
    instance crawl alone, so it is an error.
    """
    context = CrawlContext.of(spider.crawler)
    execution_id = context.execution_id if context.execution_id_given else None
    if not execution_id:
        raise ConfigurationError(
            "REDIS_URL is set, so this crawl is distributed: start every instance of the crawl "
            "with the same execution id (scrapy crawl workflow -a execution_id=ID ...)"
        )
    return Keys.for_run(config.key_prefix, context.workflow, str(execution_id))


def instance_id() -> str:
    """Names this process in lease records: host, pid and a random part."""
    import os
    import secrets
    import socket

    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
