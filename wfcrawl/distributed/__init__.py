"""Distributed crawls: scrapy-redis's scheduler with wfcrawl's leased queue,
dupefilter, serializer and fleet-wide rate limit (docs/distributed.md).

Only used when ``REDIS_URL`` is set (see :mod:`wfcrawl.distributed.setup`).
"""
