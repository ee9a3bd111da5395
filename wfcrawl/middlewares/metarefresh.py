"""Scrapy's MetaRefreshMiddleware without decoding pages that cannot hold a meta refresh.

Scrapy's middleware looks for ``<meta http-equiv="refresh">`` in the first 4096
characters of every HTML page, and to get them it decodes the *whole* body
(``response.text``). w3lib only accepts a tag whose attributes spell
``refresh``, so in an ASCII-compatible encoding (UTF-8, the ISO-8859 and
Windows code pages, Shift_JIS, EUC, GB18030, Big5...) a page whose first
4 x 4096 bytes (the most 4096 characters can take) do not contain the bytes
``refresh`` in any case has no meta refresh, and the page is passed on
undecoded. Anything else (a match, a NUL byte or a UTF-16/32 byte order mark in
those bytes: a wide encoding) goes through Scrapy's middleware unchanged.

The fast profile puts it in the place of Scrapy's (order 580) unless the project
names Scrapy's middleware itself. With parse workers (WFCRAWL_PARSE_WORKERS)
the crawl process then never decodes most pages: the worker does.
"""

from __future__ import annotations

import codecs

from scrapy import Request
from scrapy.downloadermiddlewares.redirect import MetaRefreshMiddleware as ScrapyMetaRefreshMiddleware
from scrapy.http import HtmlResponse, Response

#: Bytes that hold the first 4096 characters in any ASCII-compatible encoding.
SCAN_BYTES = 4 * 4096

_WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)  # UTF-32 LE starts as UTF-16 LE


class MetaRefreshMiddleware(ScrapyMetaRefreshMiddleware):
    def process_response(self, request: Request, response: Response) -> Request | Response:  # type: ignore[override]
        if isinstance(response, HtmlResponse):
            head = response.body[:SCAN_BYTES]
            if b"refresh" not in head.lower() and b"\x00" not in head and not head.startswith(_WIDE_BOMS):
                return response
        return super().process_response(request, response)
