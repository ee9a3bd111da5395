"""Product extraction written by hand with parsel, shared by the hand-written Scrapy
spider (b) and the Crawlee crawler (c) so that both do exactly the same work as the
workflow's ``extract`` node in ``shop.yaml``."""

from __future__ import annotations

import re
from typing import Any

from parsel import Selector

_NUMBER = re.compile(r"[\d.]+")


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    m = _NUMBER.search(text)
    return float(m.group()) if m else None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None else None


def extract_product(sel: Selector) -> dict[str, Any]:
    seller = sel.css("div.seller")
    return {
        "name": sel.css("h1.name::text").get(),
        "price": _float(sel.css(".price::text").get()),
        "sku": sel.css(".sku::text").get(),
        "attributes": {
            row.css("th::text").get(): row.css("td::text").get() for row in sel.css("table.attributes tr")
        },
        "seller": {
            "name": seller.css("span.seller-name::text").get(),
            "rating": _float(seller.css("span.rating::text").get()),
            "url": seller.css("a.profile::attr(href)").get(),
        },
        "reviews": [
            {
                "author": li.css("span.author::text").get(),
                "stars": _int(li.css("span.stars::attr(data-stars)").get()),
                "text": li.css("p.text::text").get(),
            }
            for li in sel.css("ul.reviews li.review")
        ],
        "tags": sel.css("ul.tags li::text").getall(),
    }
