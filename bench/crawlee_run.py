#!/usr/bin/env python3
"""(c) Crawlee for Python's ParselCrawler: the same crawl and extraction as ``shop.yaml``.

Runs in ``bench/.venv-crawlee`` (``pip install -r bench/requirements-crawlee.txt``;
``bench/run.py`` creates it when missing).  Storage is Crawlee's
``MemoryStorageClient``: nothing is written to ``./storage``.  Items are pushed
to the default dataset (the idiomatic way) and written as JSON lines when the
crawl ends.  The pool is pinned to ``common.CONCURRENCY`` tasks
(min = desired = max), the same concurrency the Scrapy runs use; everything
else (HTTP client, session pool, retries) is Crawlee's default.

    bench/.venv-crawlee/bin/python bench/crawlee_run.py --base-url http://127.0.0.1:PORT -O items.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from crawlee import ConcurrencySettings
from crawlee.crawlers import ParselCrawler, ParselCrawlingContext
from crawlee.storage_clients import MemoryStorageClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CONCURRENCY
from extract import extract_product


def build_crawler(concurrency: int = CONCURRENCY) -> ParselCrawler:
    crawler = ParselCrawler(
        storage_client=MemoryStorageClient(),
        concurrency_settings=ConcurrencySettings(
            min_concurrency=concurrency, desired_concurrency=concurrency, max_concurrency=concurrency
        ),
    )

    @crawler.router.default_handler
    async def home(context: ParselCrawlingContext) -> None:
        await context.enqueue_links(selector="nav.categories a", label="LISTING")

    @crawler.router.handler("LISTING")
    async def listing(context: ParselCrawlingContext) -> None:
        await context.enqueue_links(selector="ul.products a.product-link", label="PRODUCT")
        await context.enqueue_links(selector="nav.pagination a.next", label="LISTING")

    @crawler.router.handler("PRODUCT")
    async def product(context: ParselCrawlingContext) -> None:
        item = extract_product(context.selector)
        item["url"] = context.request.url
        await context.push_data(item)

    return crawler


async def crawl(base_url: str, output: Path, concurrency: int) -> int:
    crawler = build_crawler(concurrency)
    await crawler.run([base_url.rstrip("/") + "/"])
    dataset = await crawler.get_dataset()
    count = 0
    with output.open("w", encoding="utf-8") as f:
        async for item in dataset.iterate_items():
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("-O", "--output", required=True, type=Path, help="items file (JSON lines, overwritten)")
    ap.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = ap.parse_args(argv)
    count = asyncio.run(crawl(args.base_url, args.output, args.concurrency))
    print(f"wrote {count} items to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
