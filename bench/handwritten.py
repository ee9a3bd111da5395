#!/usr/bin/env python3
"""(b) The hand-written Scrapy spider: the same crawl and extraction as ``shop.yaml``.

home -> category listings (``nav.categories a``) -> listing pagination
(``nav.pagination a.next``) -> product pages (``ul.products a.product-link``),
one item per product page.  Runs with ``common.SCRAPY_SETTINGS``, the settings
the harness also passes to the wfcrawl run.

    python bench/handwritten.py --base-url http://127.0.0.1:PORT -O items.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response, TextResponse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SCRAPY_SETTINGS
from extract import extract_product


class ShopSpider(scrapy.Spider):
    name = "shop_handwritten"

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")
        # like the workflow's default: the hosts of the start URLs
        self.allowed_domains = [urlsplit(self.base_url).hostname or ""]

    async def start(self) -> AsyncIterator[scrapy.Request]:
        yield scrapy.Request(self.base_url + "/", callback=self.parse_home)

    def parse_home(self, response: Response) -> Iterator[scrapy.Request]:
        for href in response.css("nav.categories a::attr(href)").getall():
            yield response.follow(href, callback=self.parse_listing)

    def parse_listing(self, response: Response) -> Iterator[scrapy.Request]:
        for href in response.css("ul.products a.product-link::attr(href)").getall():
            yield response.follow(href, callback=self.parse_product)
        for href in response.css("nav.pagination a.next::attr(href)").getall():
            yield response.follow(href, callback=self.parse_listing)

    def parse_product(self, response: Response) -> Iterator[dict[str, Any]]:
        item = extract_product(cast(TextResponse, response).selector)
        item["url"] = response.url
        yield item


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("-O", "--output", required=True, type=Path, help="items file (JSON lines, overwritten)")
    ap.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a Scrapy setting (for experiments; the benchmark passes none)")
    args = ap.parse_args(argv)
    settings = dict(SCRAPY_SETTINGS)
    for pair in args.set:
        name, sep, value = pair.partition("=")
        if not sep:
            ap.error(f"-s takes NAME=VALUE, not {pair!r}")
        settings[name] = value
    settings["FEEDS"] = {str(args.output): {"format": "jsonlines", "overwrite": True}}
    process = CrawlerProcess(settings)
    process.crawl(ShopSpider, base_url=args.base_url)
    process.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
