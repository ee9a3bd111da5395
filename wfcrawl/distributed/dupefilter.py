"""The shared dupefilter: Scrapy's request fingerprints, kept in Redis.

Two modes (``WFCRAWL_REDIS_DUPEFILTER``):

- ``set`` (default): a Redis SET of fingerprints. Exact; ~72 bytes of Redis memory
  per URL (bench/dupefilter_memory.py).
- ``bloom``: a Bloom filter (bits of one Redis string, ``BITFIELD`` in Lua), sized
  from ``WFCRAWL_REDIS_BLOOM_CAPACITY`` and ``WFCRAWL_REDIS_BLOOM_ERROR_RATE``;
  ~1.9 bytes per URL at 0.1 %. A false positive drops a request that was never
  fetched (counted as a duplicate): the price of the memory saved.

The decision "new or seen" is taken in Redis, atomically with the push of the
request (see :mod:`wfcrawl.distributed.lua`), and only when the page that found
the link is released: a process killed before that loses nothing, since its
page is fetched again and finds the link again. :meth:`RedisDupeFilter.request_seen`
therefore only answers from what this process already sent, to save round trips.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from scrapy import Request, Spider
from scrapy.dupefilters import BaseDupeFilter

from wfcrawl.distributed.config import BloomSize, RedisCrawlConfig

logger = logging.getLogger(__name__)


class FilterSpec:
    """What the Lua script needs to check a request against the shared filter."""

    def __init__(self, fingerprinter: Any, bloom: BloomSize | None) -> None:
        self.fingerprinter = fingerprinter
        self.bloom = bloom

    def fingerprint(self, request: Request) -> bytes:
        return bytes(self.fingerprinter.fingerprint(request))

    def args(self, request: Request) -> tuple[bytes | int, ...]:
        """The fingerprint (set mode) or the Bloom bit offsets; () for dont_filter."""
        if request.dont_filter:
            return ()
        return self.args_for(self.fingerprint(request))

    def args_for(self, fingerprint: bytes) -> tuple[bytes | int, ...]:
        if self.bloom is None:
            return (fingerprint,)
        # Double hashing (Kirsch-Mitzenmacher) over a re-hash of the fingerprint:
        # uniform bits whatever fingerprinter produced it.
        digest = hashlib.blake2b(fingerprint, digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "big")
        h2 = int.from_bytes(digest[8:], "big") | 1
        m = self.bloom.bits
        return tuple((h1 + i * h2) % m for i in range(self.bloom.hashes))


class RedisDupeFilter(BaseDupeFilter):
    """scrapy-redis's ``DUPEFILTER_CLASS`` / ``SCHEDULER_DUPEFILTER_CLASS`` hook.

    Answers from the fingerprints this process has already queued (the shared
    answer comes with the push). Never deletes shared state (``clear`` and
    ``close`` keep the Redis keys: other instances may still be crawling).
    """

    def __init__(self, spec: FilterSpec, local_max: int, spider: Spider | None = None, debug: bool = False) -> None:
        self.spec = spec
        self.local_max = local_max
        self.spider = spider
        self.debug = debug
        self._seen: set[bytes] = set()
        self._logged = False

    @classmethod
    def from_spider(cls, spider: Spider) -> RedisDupeFilter:
        crawler = spider.crawler
        config = RedisCrawlConfig.from_settings(crawler.settings)
        spec = FilterSpec(crawler.request_fingerprinter, config.bloom)
        return cls(spec, config.local_seen_max, spider, crawler.settings.getbool("DUPEFILTER_DEBUG"))

    def request_seen(self, request: Request) -> bool:
        fp = self.spec.fingerprint(request)
        if fp in self._seen:
            if self.spider is not None:
                self.spider.crawler.stats.inc_value("wfcrawl/scheduler/filtered/local")
            return True
        if len(self._seen) >= self.local_max:
            # A bounded memory of what was sent; forgetting only costs round trips.
            self._seen.clear()
        if self.local_max:
            self._seen.add(fp)
        return False

    def log(self, request: Request, spider: Spider) -> None:
        if self.debug or not self._logged:
            logger.debug("Filtered duplicate request: %s", request, extra={"spider": spider})
            self._logged = True

    def clear(self) -> None:
        """Keep the shared fingerprints: they belong to the whole crawl."""

    def close(self, reason: str = "") -> None:
        """Nothing to close: the shared state outlives every instance."""
