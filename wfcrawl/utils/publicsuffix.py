"""The Public Suffix List without the network.

Scrapy's cookies middleware asks tldextract whether a cookie's domain is a
public suffix; tldextract's default instance then downloads the Public Suffix
List from the internet the first time (per cache directory), and where the
network is closed (containers, CI, a fleet behind a proxy) it logs two long
tracebacks before falling back to the snapshot it ships. wfcrawl uses that
snapshot from the start: no download is ever attempted. A crawl that wants the
current list sets ``TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS`` (tldextract's own
environment variable), which is then left alone.

Scrapy builds its extractor when ``scrapy.downloadermiddlewares.cookies`` is
imported; its ``suffix_list_urls`` is a public attribute of tldextract's
``TLDExtract``, the module attribute holding it is Scrapy's (a Scrapy internal,
tested by tests/test_console.py).
"""

from __future__ import annotations

import os


def use_bundled_suffix_list() -> None:
    if "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS" in os.environ:
        return
    try:
        from scrapy.downloadermiddlewares import cookies
        from tldextract import TLDExtract
    except ImportError:  # pragma: no cover - a Scrapy without tldextract
        return
    extractor = getattr(cookies, "_split_domain", None)
    if isinstance(extractor, TLDExtract):
        extractor.suffix_list_urls = ()
