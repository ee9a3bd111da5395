"""Quick checks of the benchmark's own pieces (a few seconds, no crawler runs).

    .venv/bin/python -m pytest bench -q
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from parsel import Selector

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import extract
import gensite
import run
import server

N = 120
needs_nginx = pytest.mark.skipif(not Path(server.NGINX).exists(), reason="nginx not installed")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    gensite.generate(root, N)
    return root


def test_generator_is_deterministic(site: Path, tmp_path: Path) -> None:
    digest = gensite.generate(tmp_path / "again", N)
    assert digest == gensite.tree_digest(site) == gensite.tree_digest(tmp_path / "again")
    other = gensite.generate(tmp_path / "other-seed", N, seed=gensite.DEFAULT_SEED + 1)
    assert other != digest


def test_product_i_does_not_depend_on_n() -> None:
    small, large = gensite.build_catalog(50), gensite.build_catalog(200)
    assert [gensite.expected_item(p) for p in small.products] == [
        gensite.expected_item(p) for p in large.products[:50]
    ]


def test_site_shape(site: Path) -> None:
    catalog = gensite.build_catalog(N)
    pages = list(site.rglob("*.html"))
    assert len(pages) == catalog.expected_pages()
    products = sorted((site / "product").glob("*.html"))
    assert len(products) == N
    for page in products:
        assert 10_000 <= page.stat().st_size <= 15_000, page
        links = Selector(text=page.read_text()).css("a[href]")
        assert 28 <= len(links) <= 34, page
    home = Selector(text=(site / "index.html").read_text())
    assert len(home.css("nav.categories a")) == len(gensite.CATEGORIES)


def test_listing_pagination_reaches_every_product(site: Path) -> None:
    seen: list[str] = []
    home = Selector(text=(site / "index.html").read_text())
    for href in home.css("nav.categories a::attr(href)").getall():
        url: str | None = href
        while url:
            sel = Selector(text=(site / url.lstrip("/") / "index.html").read_text())
            seen += sel.css("ul.products a.product-link::attr(href)").getall()
            url = sel.css("nav.pagination a.next::attr(href)").get()
    assert sorted(seen) == sorted(p.url for p in gensite.build_catalog(N).products)


def test_extraction_matches_the_catalog(site: Path) -> None:
    for p in gensite.build_catalog(N).products:
        sel = Selector(text=(site / p.url.lstrip("/")).read_text())
        assert extract.extract_product(sel) == gensite.expected_item(p)


def test_verify_items(tmp_path: Path) -> None:
    expected = gensite.expected_items(30)
    items = [dict(v, _type="product", _meta={"url": "x"}) for v in expected.values()]
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(i) + "\n" for i in items) + json.dumps({"_type": "other"}) + "\n")
    assert run.verify_items(good, expected, "t") == 30
    bad = tmp_path / "bad.jsonl"
    wrong = dict(items[1], price=0.0)
    bad.write_text("".join(json.dumps(i) + "\n" for i in [items[0], items[0], wrong]))
    with pytest.raises(run.BenchError, match="28 missing, 1 duplicate, 0 unknown, 1 with wrong fields"):
        run.verify_items(bad, expected, "t")


@needs_nginx
def test_nginx_serves_and_stops(site: Path) -> None:
    with server.NginxServer(site) as srv:
        offset = srv.log_offset()
        assert offset == 0  # the readiness probe is not logged
        pid = srv.pid
        assert pid is not None
        with urllib.request.urlopen(srv.base_url + "/") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/html")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(srv.base_url + "/missing.html")
        assert srv.requests_logged(offset) == {200: 1, 404: 1}
        port = srv.port
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@needs_nginx
def test_nginx_retries_when_the_port_was_taken(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    ports = iter([taken])
    real = server.free_port
    monkeypatch.setattr(server, "free_port", lambda: next(ports, None) or real())
    try:
        with server.serve(site) as url:
            assert not url.endswith(f":{taken}")
            with urllib.request.urlopen(url + "/") as resp:
                assert resp.status == 200
    finally:
        squatter.close()


@needs_nginx
def test_nginx_reports_a_bad_root(tmp_path: Path) -> None:
    with pytest.raises(server.NginxError):
        server.NginxServer(tmp_path)


def test_scrapy_cli_args() -> None:
    args = common.scrapy_cli_args({"A": 1, "B": False})
    assert args == ["-s", "A=1", "-s", "B=False"]


def test_bench_gitignore_covers_the_crawlee_venv() -> None:
    ignore = (Path(__file__).parent / ".gitignore").read_text().split()
    assert ".venv-crawlee/" in ignore and ".cache/" in ignore
