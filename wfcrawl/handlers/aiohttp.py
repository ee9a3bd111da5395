"""An HTTP/1.1 download handler on aiohttp, for ``http`` and ``https`` (opt-in).

Scrapy's default handler (``HTTP11DownloadHandler``, on Twisted's HTTP client)
is about a fifth of the CPU of a fast crawl; aiohttp's client, with its C
HTTP parser on the asyncio loop Scrapy already runs, needs roughly half of
that (docs/performance.md). Turn it on with::

    DOWNLOAD_HANDLERS = {
        "http": "wfcrawl.handlers.aiohttp.AiohttpDownloadHandler",
        "https": "wfcrawl.handlers.aiohttp.AiohttpDownloadHandler",
    }

It is the aiohttp handler Scrapy 2.19 ships (and uses when it runs without a
Twisted reactor), under a public name that does not move with Scrapy's
private modules. A handler only fetches: retries, redirects, cookies,
robots.txt, offsite filtering, compression, proxies from the environment and
statistics stay with Scrapy's downloader middlewares, which sit above it, so
they behave exactly as with the default handler
(``tests/test_downloader_aiohttp.py`` runs the same crawls with both).

What it handles like the default handler: ``DOWNLOAD_TIMEOUT`` and the
``download_timeout`` meta key (``DownloadTimeoutError``), ``DOWNLOAD_MAXSIZE``
/ ``DOWNLOAD_WARNSIZE`` (``DownloadCancelledError``), bodies passed on still
compressed (``HttpCompressionMiddleware`` decodes them), chunked bodies,
keep-alive connections (at most ``CONCURRENT_REQUESTS`` in total and
``CONCURRENT_REQUESTS_PER_DOMAIN`` per host), HTTP proxies with Basic
credentials (``proxy`` meta key, ``http_proxy``), ``DOWNLOAD_FAIL_ON_DATALOSS``,
the ``headers_received``/``bytes_received`` signals, ``DOWNLOAD_BIND_ADDRESS``.

What it does not: the ``bindaddress`` meta key (logged, ignored), HTTP/2, the
Twisted TLS settings (``DOWNLOADER_CLIENTCONTEXTFACTORY``), and responses that
break HTTP/1.1 in ways Twisted's lenient parser tolerates (aiohttp's parser is
strict: such a page fails with ``DownloadFailedError``). Scrapy logs that its
handler is experimental; it needs Scrapy 2.19 or later, aiohttp, and the
asyncio reactor (Scrapy's default). Rendering (``wfcrawl[browser]``) uses
scrapy-playwright's handler instead: the two cannot be combined.
"""

from __future__ import annotations

try:
    from scrapy.core.downloader.handlers._aiohttp import (
        AiohttpDownloadHandler as _ScrapyAiohttpDownloadHandler,
    )
except ImportError as exc:  # Scrapy < 2.19, or aiohttp missing
    raise ImportError(
        "wfcrawl.handlers.aiohttp needs Scrapy >= 2.19 and aiohttp: pip install 'wfcrawl[fast]'"
        f" ({exc})"
    ) from exc

from typing import Any

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.security.resolvers import GuardedAiohttpResolver, policy_from_settings

__all__ = ["AiohttpDownloadHandler"]


class AiohttpDownloadHandler(_ScrapyAiohttpDownloadHandler):
    """Scrapy's aiohttp download handler (see the module docstring).

    With the SSRF guard on (``WFCRAWL_SSRF_GUARD_ENABLED``, launched crawls) its
    connector resolves through :class:`~wfcrawl.security.resolvers.GuardedAiohttpResolver`:
    the address a connection is made to passes the policy, as with Twisted's
    ``GuardedResolver`` (a host resolving to a refused address fails to connect).
    """

    def __init__(self, crawler: Any) -> None:
        super().__init__(crawler)
        policy = policy_from_settings(crawler.settings)
        if policy is None:
            return
        connector = self._session.connector
        inner = getattr(connector, "_resolver", None)
        if inner is None:  # an aiohttp that keeps its resolver elsewhere: fail closed
            raise ConfigurationError("wfcrawl.handlers.aiohttp cannot apply the SSRF guard with this aiohttp")
        connector._resolver = GuardedAiohttpResolver(policy, inner, crawler.stats)  # type: ignore[union-attr]
