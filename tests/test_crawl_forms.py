"""Forms fed by the page: an ASP.NET-style search with dependent selects, crawled
completely by one short document (workflows/search.yaml)."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs

from tests.conftest import ROOT, Crawl, stat_items
from tests.mockserver import MockServer

DATA = json.loads((ROOT / "tests/sites/search/data.json").read_text())


def expected_quotes() -> list[dict[str, str]]:
    """Ground truth from the site's data: one result per quote and tag."""
    names = {a["id"]: a["name"] for a in DATA["authors"]}
    out = [{"text": q["text"], "author": names[q["author"]], "tag": tag} for q in DATA["quotes"] for tag in q["tags"]]
    return sorted(out, key=lambda d: json.dumps(d, sort_keys=True))


def test_search_example_crawls_every_author_and_tag(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/search.yaml", base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    quotes = result.fields("quote")
    assert len(quotes) == 26
    assert quotes == expected_quotes()
    assert {"text": "Religion to me is science and science is religion.", "author": "Ada Lovelace",
            "tag": "science"} in quotes
    assert stat_items(result.stats, "wfcrawl/pages/") == {"search": 1, "tags": 4, "results": 17}
    # 4 author postbacks + 14 searches + 3 "next" postbacks; 14 last pages have no next link.
    assert stat_items(result.stats, "wfcrawl/forms/") == {"submitted": 21, "no_values": 14}
    requests = fresh_server.requests
    assert [r.method for r in requests] == ["GET"] + ["POST"] * 21
    bodies = [{k: v[0] for k, v in parse_qs(r.body.decode(), keep_blank_values=True).items()} for r in requests[1:]]
    postbacks = [b for b in bodies if b["__EVENTTARGET"] == "ctl00$main$author"]
    assert sorted(b["ctl00$main$author"] for b in postbacks) == ["1", "2", "3", "4"]
    # A postback clicks no button; a search clicks the search button only.
    assert all("ctl00$main$search" not in b for b in postbacks)
    searches = [b for b in bodies if "ctl00$main$search" in b]
    assert len(searches) == 14 and all(b["__EVENTTARGET"] == "" for b in searches)
    pages = sorted(b["__EVENTARGUMENT"] for b in bodies if b["__EVENTTARGET"] == "ctl00$main$results")
    assert pages == ["Page$2", "Page$2", "Page$3"]
    # Every POST carried view state and event validation (the server refuses others with a 500).
    assert all(b["__VIEWSTATE"] and b["__EVENTVALIDATION"] for b in bodies)
    assert result.stats.get("wfcrawl/pages/failed", 0) == 0


def test_a_changed_view_state_is_refused(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    """The fixture is strict: a form that does not carry __VIEWSTATE unchanged gets nothing."""
    result = crawl("""\
        name: tampered
        start_urls: [/search/search.aspx]
        obey_robots: false
        phases:
          search:
            nodes:
              - type: form
                iterate: {author: {options: ctl00$main$author}}
                fields: {__EVENTTARGET: ctl00$main$author, __VIEWSTATE: changed}
                click: false
                phase: tags
          tags:
            nodes:
              - {type: extract, item: tags, fields: {tags: {css: 'select[name$=tag] option', many: true}}}
        """, base_url=fresh_server.url)
    # Nothing came of it: the crawl failed (wfcrawl.outcome), exit status 1.
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.items == []
    assert result.stats["wfcrawl/pages/failed/http_500"] == 4
    assert stat_items(result.stats, "wfcrawl/outcome") == {"": "failed", "/reasons/no_items": 1}


def test_max_depth_bounds_form_submissions(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    text = (ROOT / "workflows/search.yaml").read_text().replace("obey_robots: false\n", "obey_robots: false\nmax_depth: 3\n")
    result = crawl(text, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    # Results page 1 is at depth 2, page 2 at depth 3: only Ada Lovelace + mathematics has a page 3.
    assert len(result.fields("quote")) == 25
    assert result.stats["wfcrawl/forms/dropped/max_depth"] == 1
    assert result.stats["wfcrawl/pages/results"] == 16


def test_iterate_filters_lists_and_limit(fresh_server: MockServer, crawl: Callable[..., Crawl]) -> None:
    """Options filtered by `match`/`exclude`, a constant list placed by a template, `limit`."""
    result = crawl("""\
        name: filtered
        start_urls: [/search/search.aspx]
        obey_robots: false
        phases:
          search:
            nodes:
              - type: form
                iterate:
                  author: {options: ctl00$main$author, match: '^[1-3]$', exclude: '^2$'}
                fields: {__EVENTTARGET: '{target}'}
                values: {target: {css: 'select[name$=author]', attr: name}}
                click: false
                phase: tags
          tags:
            nodes:
              - type: form
                iterate:
                  tag: {list: [wisdom, imagination, nonsense], field: ctl00$main$tag}
                click: ctl00$main$search
                limit: 2
                phase: results
          results:
            nodes:
              - type: extract
                item: result
                fields:
                  author: {var: author_label}
                  tag: {var: tag}
                  count: {css: p.count, type: int}
                  error: p.error
        """, base_url=fresh_server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    # Authors 1 and 3; tags wisdom and imagination (limit 2: "nonsense" never sent).
    assert result.fields("result") == [
        {"author": "Ada Lovelace", "count": 2, "error": None, "tag": "imagination"},
        {"author": "Ada Lovelace", "count": None, "error": "Select a tag.", "tag": "wisdom"},
        {"author": "Grace Hopper", "count": 2, "error": None, "tag": "wisdom"},
        {"author": "Grace Hopper", "count": None, "error": "Select a tag.", "tag": "imagination"},
    ]
    assert stat_items(result.stats, "wfcrawl/forms/") == {"submitted": 6, "dropped/limit": 2}
