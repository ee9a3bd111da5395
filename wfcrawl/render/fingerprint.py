"""Request fingerprints that tell a rendered fetch from a plain one, on request.

By default a URL is one URL: fetched plain by one phase and rendered by
another, the dupefilter lets only the first through (the response is the same
resource). A render block with ``distinct: true`` says the rendered page is
different content; its requests then get a fingerprint of their own.

Installed by the add-on as ``REQUEST_FINGERPRINTER_CLASS`` when rendering is on,
wrapping the fingerprinter that was configured
(``WFCRAWL_RENDER_FINGERPRINTER_BASE``): every other fingerprint is unchanged.
Dupefilters that use ``crawler.request_fingerprinter`` (Scrapy's, and the
Redis one of wfcrawl's scheduler) see the difference; scrapy-redis's own
``RFPDupeFilter`` hashes method/URL/body itself and does not.
"""

from __future__ import annotations

import hashlib
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.utils.misc import build_from_crawler, load_object

from wfcrawl.meta import RENDER
from wfcrawl.settings.table import read

_SALT = b"wfcrawl-render-distinct"


class RenderFingerprinter:
    def __init__(self, crawler: Crawler) -> None:
        base = load_object(read(crawler.settings, "WFCRAWL_RENDER_FINGERPRINTER_BASE"))
        self._base: Any = build_from_crawler(base, crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RenderFingerprinter:
        return cls(crawler)

    def fingerprint(self, request: Request) -> bytes:
        fp: bytes = self._base.fingerprint(request)
        render = request.meta.get(RENDER)
        if render and render.get("distinct"):
            return hashlib.sha1(fp + _SALT).digest()
        return fp
