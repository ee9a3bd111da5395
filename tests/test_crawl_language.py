"""The workflow language against the fixture sites: URL templates, values handed on
to linked pages, HTML and numbered pagination with stop conditions, refetch, JSON
embedded in a page. Each example of workflows/ here is crawled with its exact items."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from tests.conftest import ROOT, Crawl, stat_items
from tests.mockserver import MockServer
from wfcrawl.spiders.memory import CrawlMemory
from wfcrawl.workflow import load_text
from wfcrawl.workflow.page import Item, Link

QUOTES = [
    {"text": "The world as we have created it is a process of our thinking.", "author": "Albert Einstein",
     "tags": ["change", "thinking"]},
    {"text": "It is our choices that show what we truly are.", "author": "Jane Austen", "tags": ["choices"]},
    {"text": "There are only two ways to live your life.", "author": "Albert Einstein",
     "tags": ["inspirational", "life"]},
    {"text": "The person, be it gentleman or lady, who has not pleasure in a good novel, must be intolerably "
             "stupid.", "author": "Jane Austen", "tags": ["books", "humor"]},
    {"text": "The secret of getting ahead is getting started.", "author": "Mark Twain", "tags": ["inspirational"]},
    {"text": "Nothing in life is to be feared, it is only to be understood.", "author": "Marie Curie",
     "tags": ["life", "fear"]},
    {"text": "Try to learn something about everything and everything about something.", "author": "Mark Twain",
     "tags": []},
    {"text": "Imagination is more important than knowledge.", "author": "Albert Einstein", "tags": ["imagination"]},
]


def _sorted(items: Sequence[Mapping[str, object]]) -> list[Mapping[str, object]]:
    return sorted(items, key=lambda d: json.dumps(d, sort_keys=True))


def test_quotes_example(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/quotes.yaml", base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("quote") == _sorted(QUOTES)
    # The slug is not on the author page: it came with the link, from the listing row.
    assert result.fields("author") == _sorted([
        {"slug": "albert-einstein", "name": "Albert Einstein", "born": "1879-03-14", "location": "Ulm, Germany",
         "description": "Theoretical physicist."},
        {"slug": "jane-austen", "name": "Jane Austen", "born": "1775-12-16",
         "location": "Steventon Rectory, Hampshire, The United Kingdom", "description": "English novelist."},
        {"slug": "marie-curie", "name": "Marie Curie", "born": "1867-11-07", "location": "Warsaw, Poland",
         "description": "Physicist and chemist."},
        {"slug": "mark-twain", "name": "Mark Twain", "born": "1835-11-30",
         "location": "Florida, Missouri, The United States", "description": "American writer and humorist."},
    ])
    base = fresh_server.url
    assert result.fields("tag") == _sorted([
        {"name": name, "url": f"{base}/quotes/tag/{name}/"}
        for name in ("change", "thinking", "choices", "inspirational", "life", "books", "humor", "fear", "imagination")
    ])
    assert result.stats["wfcrawl/items/dropped/duplicate/tag"] == 2  # inspirational, life again on page 2
    assert stat_items(result.stats, "wfcrawl/pages/") == {"listing": 3, "author": 4}
    paths = fresh_server.paths()
    assert sorted(p for p in paths if p.startswith("/quotes/author/")) == [
        "/quotes/author/albert-einstein/", "/quotes/author/jane-austen/", "/quotes/author/marie-curie/",
        "/quotes/author/mark-twain/",
    ]
    authors = {i["slug"]: i["_meta"]["markers"] for i in result.of_type("author")}
    assert authors["mark-twain"] == ["start", "next", "author"]


def test_numbered_example(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/numbered.yaml", base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("quote") == _sorted([{"text": q["text"]} for q in QUOTES])
    # The catalog's page 4 repeats page 3: its items are dropped and paging stops there.
    assert result.fields("product") == _sorted(
        [{"name": n} for n in ("Anvil", "Bucket", "Chisel", "Drill", "Easel", "File", "Gauge", "Hammer")]
    )
    paths = [p for p in fresh_server.paths() if p != "/robots.txt"]
    assert sorted(paths) == sorted([
        "/quotes/page/1/", "/quotes/page/2/", "/quotes/page/3/", "/quotes/page/4/",
        "/catalog?page=1", "/catalog?page=2", "/catalog?page=3", "/catalog?page=4",
    ])
    assert stat_items(result.stats, "wfcrawl/pages/") == {"quotes": 4, "catalog": 4}
    assert result.stats["wfcrawl/items/dropped/repeated"] == 2
    assert result.stats["wfcrawl/links/dropped/no_new"] == 1


def test_refetch_example(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/refetch.yaml", base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    # The start page, then the same URL 3 more times (refetch: 3); the 4th link is dropped.
    assert result.fields("tick") == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert fresh_server.paths() == ["/ticker"] * 4
    assert result.stats["wfcrawl/links/dropped/refetch"] == 1


def test_without_refetch_a_page_is_fetched_once(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    text = (ROOT / "workflows/refetch.yaml").read_text().replace("        refetch: 3\n", "")
    result = crawl(text, base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("tick") == [{"n": 1}]
    assert result.stats["dupefilter/filtered"] == 1


def test_embedded_json_example(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/embedded.yaml", base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("quote") == _sorted(QUOTES[:3])
    assert result.fields("author") == [
        {"name": "Albert Einstein", "slug": "albert-einstein"}, {"name": "Jane Austen", "slug": "jane-austen"},
    ]


CARRIED = """\
name: carried
start_urls: [/shop/index.html]
obey_robots: false
phases:
  home:
    nodes:
      - type: extract_links
        rows: ul.categories a            # each link is its own row
        values: {category: '::text'}
        marker: category
    transitions:
      - {marker: category, to: listing}
  listing:
    nodes:
      - type: extract_links
        rows: div.product-card
        css: a.title                     # the link inside the row
        values:
          list_price: {css: span.price, type: float}
          card_title: a.title
        marker: product
      - {type: extract_links, css: a.next, marker: next}   # hands the page's variables on
    transitions:
      - {marker: product, to: product}
      - {marker: next, to: listing}
  product:
    nodes:
      - type: extract
        item: product
        fields:
          name: h1.name
          category: {var: category}      # from the home page, through the listing pages
          list_price: {var: list_price}  # from the listing card
          card_title: {var: card_title}
"""


def test_values_handed_on_from_rows_through_next_pages(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl(CARRIED, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [
        ("Aero 13 Laptop", "Laptops", 1299.0), ("Titan 17 Workstation", "Laptops", 2499.99),
        ("Nimbus 14", "Laptops", 849.0), ("Pixel Slate 12", "Laptops", None), ("Budget Book 15", "Laptops", 399.0),
        ("Nova Phone 6", "Phones", 699.0), ("Nova Phone 6 Pro", "Phones", 1099.0), ("Pocket Mini", "Phones", 249.5),
    ]
    # The product pages' h1 is the card's title: each item joined its own card's values.
    assert result.fields("product") == _sorted([
        {"name": title, "category": category, "list_price": price, "card_title": title}
        for title, category, price in rows
    ])
    # Pixel Slate 12 has no price on its card: the value is absent, the link still followed.
    assert result.stats["wfcrawl/links/scheduled"] == 2 + 1 + 8


def test_paginate_values_and_a_selector_stop_condition(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("""\
        name: paged
        start_urls: ['/catalog?page=1']
        obey_robots: false
        phases:
          catalog:
            nodes:
              - {type: extract, item: product, rows: li.product, fields: {name: span.name}}
              - type: paginate
                url: /catalog?page={page}&after={last}
                values: {last: 'li.product:last-child span.name'}
                marker: page
                stop_when: {xpath: "//span[@class='name'] = 'Hammer'"}   # the last product
            transitions:
              - {marker: page, to: catalog}
        """, base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.fields("product")) == 8
    assert [p for p in fresh_server.paths() if p != "/robots.txt"] == [
        "/catalog?page=1", "/catalog?after=Chisel&page=2", "/catalog?after=File&page=3",
    ]
    # The value was handed on too: the items of page 2 could read it with `var: last`.
    assert [i["_meta"]["url"].split("?")[1] for i in result.of_type("product")][-2:] == ["after=File&page=3"] * 2


def test_records_spanning_two_table_rows(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    """The guide's table idiom (docs/guide.md, 6.11): following-sibling reaches the second row."""
    result = crawl("""\
        name: tableful
        start_urls: [/quotes/tableful/]
        obey_robots: false
        phases:
          table:
            nodes:
              - type: extract
                item: quote
                rows: {xpath: '//table//tr[td[contains(., "Author:")]]'}
                fields:
                  text: {xpath: 'td', re: '“(.*)”'}
                  author: {xpath: 'td', re: 'Author: (.*)'}
                  tags: {xpath: 'following-sibling::tr[1]//a', many: true}
        """, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("quote") == _sorted([QUOTES[0], QUOTES[1], QUOTES[6]])


def test_sitemap_idiom(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    """The guide's sitemap idiom: namespaced XML read with local-name(), lastmod handed on."""
    result = crawl("""\
        name: sitemap
        start_urls: [/quotes/sitemap.xml]
        obey_robots: false
        phases:
          sitemap:
            nodes:
              - type: extract_links
                rows: {xpath: "//*[local-name()='url']"}
                xpath: "*[local-name()='loc']/text()"
                values: {lastmod: {xpath: "*[local-name()='lastmod']", type: date}}
                marker: page
            transitions:
              - {marker: page, to: author}
          author:
            nodes:
              - {type: extract, item: author, fields: {name: h3.author-title, updated: {var: lastmod}}}
        """, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("author") == [
        {"name": "Albert Einstein", "updated": "2024-01-05"}, {"name": "Marie Curie", "updated": "2024-02-11"},
    ]


def test_crawl_memory_sift_links_mode() -> None:
    """stop_when_no_new: links: the next-page link follows only a page with a link its phase had not seen."""

    plan = load_text("""\
name: m
start_urls: [http://x.test/]
phases:
  p:
    nodes:
      - {type: extract_links, css: a, marker: d}
      - {type: paginate, url: '?p={page}', marker: n, stop_when_no_new: links}
    transitions: [{marker: d, to: p}, {marker: n, to: p}]
""")
    memory = CrawlMemory(plan)
    assert memory.phases == frozenset({"p"})
    counts: list[str] = []
    nxt = Link("http://x.test/?p=2", "n", 2, if_new="links")
    first = [Link("http://x.test/a", "d"), Item("x", {"a": 1}), nxt]
    assert memory.sift("p", first, counts.append) == first
    again = [Link("http://x.test/a", "d"), Item("x", {"a": 1}), nxt]
    # Nothing new: the next-page link goes; the items stay (only `items` mode drops them).
    assert memory.sift("p", again, counts.append) == again[:2]
    assert counts == ["wfcrawl/links/dropped/no_new"]


def test_paging_by_json_embedded_in_the_page(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("""\
        name: nextdata
        start_urls: [/quotes/next/page-1.html]
        obey_robots: false
        phases:
          page:
            nodes:
              - type: extract
                item: product
                json_from: &data 'script#__NEXT_DATA__::text'
                rows: {jmespath: props.pageProps.products}
                fields: {name: {jmespath: name}}
              - type: paginate
                url: page-{page}.html
                json_from: *data
                stop_when: props.pageProps.page >= props.pageProps.lastPage
                marker: next
            transitions:
              - {marker: next, to: page}
        """, base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("product") == [{"name": "Anvil"}, {"name": "Bucket"}, {"name": "Chisel"}]
    assert [p for p in fresh_server.paths() if p != "/robots.txt"] == [
        "/quotes/next/page-1.html", "/quotes/next/page-2.html",
    ]


def test_document_headers_are_sent(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("""\
        name: headers
        start_urls: [/echo]
        obey_robots: false
        headers: {Accept: application/json, X-Requested-With: XMLHttpRequest}
        phases:
          echo:
            nodes:
              - type: extract
                item: echo
                fields:
                  accept: {jmespath: headers.Accept}
                  ajax: {jmespath: '"headers"."X-Requested-With"'}
                  language: {jmespath: '"headers"."Accept-Language"'}
        """, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    # The document's Accept replaces Scrapy's; Scrapy's Accept-Language stays.
    assert result.fields("echo") == [{"accept": "application/json", "ajax": "XMLHttpRequest", "language": "en"}]
