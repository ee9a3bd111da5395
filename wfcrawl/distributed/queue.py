"""scrapy-redis's ``SCHEDULER_QUEUE_CLASS`` hook: the leased, shared request queue.

scrapy-redis's ``Scheduler`` stays as it is; it builds this queue in ``open()``
with the spider. The queue names its keys after the crawl run (workflow and
execution id, see :mod:`wfcrawl.distributed.config`), not after
``SCHEDULER_QUEUE_KEY`` (the spider name is the same for every workflow), and
hands the work to a :class:`~wfcrawl.distributed.broker.LeaseBroker`.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy import Request, Spider
from scrapy.utils.request import request_from_dict
from scrapy_redis import picklecompat
from scrapy_redis.queue import Base

from wfcrawl.distributed.broker import LeaseBroker
from wfcrawl.distributed.config import RedisCrawlConfig, instance_id, keys_for_spider
from wfcrawl.distributed.dupefilter import FilterSpec
from wfcrawl.distributed.ops import LeaseStore, Push
from wfcrawl.distributed.serializer import SerializationError
from wfcrawl.exceptions import ConfigurationError

logger = logging.getLogger(__name__)

#: Request classes a request from Redis may be rebuilt as (``_class`` of
#: ``Request.to_dict``); anything else is refused, never imported.
REQUEST_CLASSES = frozenset({
    "scrapy.http.request.form.FormRequest",
    "scrapy.http.request.json_request.JsonRequest",
    "scrapy.http.request.rpc.XmlRpcRequest",
})


class LeasedQueue(Base):  # type: ignore[misc]
    """Push buffers a request; pop hands out a leased one; nothing here blocks."""

    def __init__(self, server: Any, spider: Spider, key: str, serializer: Any = None) -> None:
        if serializer is None or serializer is picklecompat:
            raise ConfigurationError(
                "wfcrawl's Redis queue refuses pickle: set SCHEDULER_SERIALIZER = 'wfcrawl.distributed.serializer'"
            )
        super().__init__(server, spider, key, serializer)
        crawler = spider.crawler
        config = RedisCrawlConfig.from_settings(crawler.settings)
        keys = keys_for_spider(spider, config)
        self.key = keys.queue
        self.spec = FilterSpec(crawler.request_fingerprinter, config.bloom)
        store = LeaseStore(server, keys, instance=instance_id(), lease_ttl=config.lease_ttl,
                           mode=config.dupefilter, key_ttl=config.key_ttl, lifo=config.lifo)
        self.broker = LeaseBroker(crawler, store, config, self._decode_request)
        self._dropped_meta: set[str] = set()
        crawler.stats.set_value("wfcrawl/scheduler/keys", keys.base)
        logger.info("Distributed crawl: keys %s*, instance %s", keys.base, store.instance, extra={"spider": spider})

    def __len__(self) -> int:
        return self.broker.ready_count()

    def push(self, request: Request) -> None:
        self.broker.push(Push(-request.priority, self.spec.args(request), self._encode_request(request)))

    def pop(self, timeout: int = 0) -> Request | None:
        return self.broker.pop()

    def clear(self) -> None:
        """Never delete the shared queue: other instances may still be crawling it."""

    def _encode_request(self, request: Request) -> bytes:
        obj = request_to_dict(request, self.spider)
        while True:
            try:
                return bytes(self.serializer.dumps(obj))
            except SerializationError as exc:
                # A process-local object in meta (a browser page, a callable) has no
                # meaning elsewhere: the request travels without it, and we say so.
                name = next((k for k in obj.get("meta", {}) if exc.path.startswith(f"meta[{k!r}]")), None)
                if name is None:
                    raise
                obj = {**obj, "meta": {k: v for k, v in obj["meta"].items() if k != name}}
                self.spider.crawler.stats.inc_value("wfcrawl/scheduler/meta_dropped")
                if name not in self._dropped_meta:
                    self._dropped_meta.add(name)
                    logger.warning("Request meta %r is not plain data and is not sent through Redis: %s",
                                   name, exc, extra={"spider": self.spider})

    def _decode_request(self, encoded: bytes) -> Request:
        return request_from_payload(self.serializer, encoded, self.spider)


def request_to_dict(request: Request, spider: Spider) -> dict[str, Any]:
    """:meth:`Request.to_dict` without its cost: Scrapy finds a callback's name by
    listing every method of the spider (``inspect.getmembers``), for every request."""
    callback, errback = _method_name(spider, request.callback), _method_name(spider, request.errback)
    if callback is _UNKNOWN or errback is _UNKNOWN:
        return request.to_dict(spider=spider)  # Scrapy's search, and its error
    d: dict[str, Any] = {"url": request.url, "callback": callback, "errback": errback,
                         "headers": dict(request.headers)}
    for attr in request.attributes:
        d.setdefault(attr, getattr(request, attr))
    if type(request) is not Request:
        d["_class"] = f"{type(request).__module__}.{type(request).__name__}"
    return d


_UNKNOWN = object()


def _method_name(spider: Spider, func: Any) -> Any:
    if func is None or isinstance(func, str):
        return func
    name = getattr(func, "__name__", None)
    if name and getattr(func, "__self__", None) is spider and getattr(
            getattr(spider, name, None), "__func__", None) is getattr(func, "__func__", _UNKNOWN):
        return name
    return _UNKNOWN


def request_from_payload(serializer: Any, payload: bytes, spider: Spider) -> Request:
    """Rebuild a request from Redis, refusing anything that would run other code:
    request classes outside :data:`REQUEST_CLASSES`, callbacks that are not the
    spider's own callback methods."""
    obj = serializer.loads(payload)
    cls = obj.get("_class")
    if cls is not None and cls not in REQUEST_CLASSES:
        raise ValueError(f"request class {cls!r} is not allowed (allowed: {sorted(REQUEST_CLASSES)})")
    for attr in ("callback", "errback"):
        name = obj.get(attr)
        if name is not None and not _is_callback(spider, name):
            raise ValueError(f"{attr} {name!r} is not a callback of spider {spider.name!r}")
    return request_from_dict(obj, spider=spider)


def _is_callback(spider: Spider, name: Any) -> bool:
    # Spider's own API (start, close, log, ...) is not a callback; parse is.
    return (
        isinstance(name, str) and name.isidentifier() and not name.startswith("_")
        and (name == "parse" or not hasattr(Spider, name))
        and callable(getattr(spider, name, None))
    )
