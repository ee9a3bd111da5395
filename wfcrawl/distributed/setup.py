"""Switch a crawl to the distributed scheduler when ``REDIS_URL`` is set.

Called by the add-on after it has read ``REDIS_URL`` from the environment.
Without ``REDIS_URL`` nothing here runs and scrapy-redis is never imported:
the crawl uses Scrapy's in-memory scheduler.
"""

from __future__ import annotations

from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings

from wfcrawl.distributed.connection import DEFAULT_PARAMS, redis_url

QUEUE = "wfcrawl.distributed.queue.LeasedQueue"
DUPEFILTER = "wfcrawl.distributed.dupefilter.RedisDupeFilter"
SERIALIZER = "wfcrawl.distributed.serializer"
#: Close to the downloader: the wait comes after every other middleware has
#: decided about the request (and after the render middleware chose its slot).
RATE_LIMIT_ORDER = 960


def install_redis_scheduler(settings: BaseSettings) -> bool:
    """scrapy-redis's Scheduler with wfcrawl's queue, dupefilter and serializer."""
    if not redis_url(settings):
        return False
    values = {
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "SCHEDULER_QUEUE_CLASS": QUEUE,
        # scrapy-redis 0.9 reads DUPEFILTER_CLASS; its docs name SCHEDULER_DUPEFILTER_CLASS.
        "DUPEFILTER_CLASS": DUPEFILTER,
        "SCHEDULER_DUPEFILTER_CLASS": DUPEFILTER,
        "SCHEDULER_SERIALIZER": SERIALIZER,
        # The shared state belongs to the crawl, not to the instance that closes
        # first (wfcrawl's queue and dupefilter never delete it anyway).
        "SCHEDULER_PERSIST": True,
        "SCHEDULER_FLUSH_ON_START": False,
        "SCHEDULER_IDLE_BEFORE_CLOSE": 0,
        "REDIS_PARAMS": {
            **DEFAULT_PARAMS,
            **settings.getdict("REDIS_PARAMS"),
            "redis_cls": "wfcrawl.distributed.connection.SharedRedis",
        },
    }
    for name, value in values.items():
        # REDIS_PARAMS may be set by the project: its values are merged above,
        # and redis_cls must stay ours, whatever the project's priority.
        priority = max(settings.getpriority(name) or 0, SETTINGS_PRIORITIES["addon"])
        settings.set(name, value, priority=priority if name == "REDIS_PARAMS" else "addon")
    from wfcrawl.middlewares.ratelimit import SharedRateLimitMiddleware

    settings.setdefault_in_component_priority_dict("DOWNLOADER_MIDDLEWARES", SharedRateLimitMiddleware,
                                                   RATE_LIMIT_ORDER)
    return True
