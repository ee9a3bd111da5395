"""Live SSRF probes: a listener on a loopback address records every connection it
gets; documents try every channel to reach it (start URL, link, redirect, meta
refresh, form action, robots.txt, the browser's navigation, redirect,
subresources, fetch, XHR, WebSocket, meta refresh and preconnect, webhooks,
item-schema ``$ref``, the aiohttp handler's resolver). Each asserts that not one
connection reached it.

The fixture site is on 127.0.0.1 (allowed, as an operator would allow a network);
the trap is on 127.0.0.2, loopback like any internal service.
"""

from __future__ import annotations

import importlib.util
import shutil
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from referencing.exceptions import Unresolvable

from tests.conftest import Crawl, problems, require_service, stat_items
from tests.launcher_support import SmallServer, make_launcher
from wfcrawl.launcher.launch import LaunchRejectedError, LaunchRequest
from wfcrawl.security.proxy import GuardProxy
from wfcrawl.security.ssrf import AddressPolicy, Refusal
from wfcrawl.storage.executions import MemoryExecutionStore
from wfcrawl.workflow.schemas import validator_for

HINT = "(allow it with WFCRAWL_SSRF_ALLOWED_NETWORKS)"
GUARD = ("-s", "WFCRAWL_SSRF_GUARD_ENABLED=True", "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=127.0.0.1/32",
         "-s", "TWISTED_DNS_RESOLVER=wfcrawl.security.resolvers.GuardedResolver")


class Trap:
    """A TCP listener that records each connection (and closes it)."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.connections: list[tuple[str, int]] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections.append(self.client_address[:2])

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((host, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.close()


def site(trap: Trap) -> SmallServer:
    """Pages that point at the trap in every way a page can."""
    pages = {
        "/links": f'<a href="{trap.url}/link">x</a><form action="{trap.url}/form"><input name="q" value="1"></form>',
        "/refresh": f'<html><head><meta http-equiv="refresh" content="0;url={trap.url}/refresh"></head></html>',
        "/rendered": f"""<html><head>
            <link rel="preconnect" href="{trap.url}"><link rel="stylesheet" href="{trap.url}/css">
            </head><body><h1>rendered</h1><img src="{trap.url}/img"><iframe src="{trap.url}/frame"></iframe>
            <script>
              fetch("{trap.url}/fetch").catch(() => null);
              const x = new XMLHttpRequest(); x.open("GET", "{trap.url}/xhr"); x.send();
              try {{ new WebSocket("ws://127.0.0.2:{trap.port}/ws"); }} catch (e) {{}}
              document.body.insertAdjacentHTML("beforeend", "<p id='done'>done</p>");
            </script></body></html>""",
        "/rendered-refresh": f'<html><head><meta http-equiv="refresh" content="0;url={trap.url}/meta"></head>'
                             "<body><h1>refresh</h1></body></html>",
    }

    def respond(path: str) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/redirect"):
            return 302, {"Location": f"{trap.url}/redirected"}, b""
        if path == "/robots.txt":
            return 404, {}, b""
        return 200, {"Content-Type": "text/html"}, pages.get(path, "<h1>plain</h1>").encode()

    return SmallServer(respond)


def test_crawl_requests_never_reach_an_internal_address(
    crawl: Callable[..., Crawl], trap: Trap
) -> None:
    pages = site(trap)
    try:
        workflow = f"""\
            name: probes
            allowed_domains: [127.0.0.1, 127.0.0.2]
            start_urls: [{pages.url}/links, {pages.url}/redirect, {pages.url}/refresh, {trap.url}/start]
            phases:
              page:
                nodes:
                  - {{type: extract_links, marker: out}}
                  - {{type: form, css: form, phase: page}}
                  - {{type: extract, item: page, fields: {{h: h1}}}}
                transitions:
                  - {{marker: out, to: page}}
            """
        result = crawl(workflow, *GUARD)
    finally:
        pages.close()
    # The one page fetched (/links) has no h1: the extract node never matched (wfcrawl.outcome).
    assert result.returncode == 3, result.stderr
    assert stat_items(result.stats, "wfcrawl/outcome") == {"": "degraded", "/reasons/node_never_matched": 1}
    assert trap.connections == []
    # Start URL, link, redirect, meta refresh, form action (the guard refuses the start
    # URL before the robots.txt middleware would ask the trap for its robots.txt).
    assert stat_items(result.stats, "wfcrawl/ssrf/") == {"refused": 5, "refused/loopback": 5}
    assert result.stats["wfcrawl/pages/failed/SSRFBlocked"] == 5
    assert sorted(pages.paths) == ["/links", "/redirect", "/refresh", "/robots.txt"]


def test_webhooks_never_reach_an_internal_address(crawl: Callable[..., Crawl], trap: Trap, tmp_path: Path) -> None:
    pages = site(trap)
    try:
        workflow = f"""\
            name: hooks
            obey_robots: false
            start_urls: [{pages.url}/plain]
            webhooks: [{{url: {trap.url}/hook, events: [finished]}}]
            phases: {{page: {{nodes: [{{type: extract, item: page, fields: {{h: h1}}}}]}}}}
            """
        # At send time (a crawl started by hand with the guard on): refused, counted, not retried.
        result = crawl(workflow, *GUARD, env={"WFCRAWL_WEBHOOKS_SECRET": "s3cret"})
    finally:
        pages.close()
    assert result.returncode == 0, result.stderr
    assert result.fields("page") == [{"h": "plain"}]
    assert trap.connections == []
    assert stat_items(result.stats, "wfcrawl/ssrf/") == {"refused": 1, "refused/loopback": 1}
    assert stat_items(result.stats, "wfcrawl/webhooks/") == {"attempts": 1, "failed": 1}
    # At launch: refused before anything starts.
    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store, WFCRAWL_SSRF_ALLOWED_NETWORKS=[], WFCRAWL_WEBHOOKS_SECRET="s3cret")
    document = (f"name: hooks\nstart_urls: [http://93.184.216.34/]\nwebhooks: [{{url: {trap.url}/hook}}]\n"
                "phases: {a: {nodes: [{type: extract, item: x, fields: {t: title}}]}}\n")
    with pytest.raises(LaunchRejectedError) as caught:
        launcher.launch(LaunchRequest(document=document))
    assert (caught.value.message, caught.value.problems) == ("URLs refused by the SSRF guard", [
        f"webhook URL {trap.url}/hook refused by the SSRF guard: 127.0.0.2 is a loopback address {HINT}"])
    assert store.list() == [] and trap.connections == []


def test_item_schemas_are_never_fetched(trap: Trap) -> None:
    document = f"""\
        name: refs
        start_urls: [http://93.184.216.34/]
        phases: {{a: {{nodes: [{{type: extract, item: x, fields: {{t: title}}}}]}}}}
        items: {{x: {{schema: {{properties: {{t: {{$ref: "{trap.url}/schema.json"}}}}}}}}}}
        """
    assert problems(document) == [
        f"4:45: $.items.x.schema.properties.t[\"$ref\"]: only references inside this schema ('#/...') are allowed,"
        f" not '{trap.url}/schema.json': item schemas are never fetched",
    ]
    # And the validators' registry never retrieves, whatever reaches it.
    with pytest.raises(Unresolvable):
        list(validator_for({"$ref": f"{trap.url}/schema.json"}).iter_errors({"t": "x"}))
    assert trap.connections == []


def test_aiohttp_handler_resolver_refuses_internal_addresses(crawl: Callable[..., Crawl]) -> None:
    """DNS rebinding through the aiohttp handler: the middleware's check is off here;
    ``localhost`` resolves to the trap's 127.0.0.1 when the handler connects."""
    if importlib.util.find_spec("aiohttp") is None:
        require_service("aiohttp", False, "pip install 'wfcrawl[fast]'")
    trap = Trap("127.0.0.1")
    try:
        workflow = f"""\
            name: rebinding
            obey_robots: false
            start_urls: [http://localhost:{trap.port}/]
            phases: {{page: {{nodes: [{{type: extract, item: page, fields: {{h: h1}}}}]}}}}
            """
        handlers = '{"http": "wfcrawl.handlers.aiohttp.AiohttpDownloadHandler"}'
        result = crawl(workflow, "-s", "WFCRAWL_SSRF_GUARD_ENABLED=True", "-s", f"DOWNLOAD_HANDLERS={handlers}",
                       "-s", 'DOWNLOADER_MIDDLEWARES={"wfcrawl.middlewares.ssrf.SSRFGuardMiddleware": null}',
                       "-s", "RETRY_ENABLED=False")
    finally:
        trap.close()
    # Its only start request was refused: the crawl failed (wfcrawl.outcome).
    assert result.returncode == 1, result.stderr
    assert stat_items(result.stats, "wfcrawl/outcome") == {"": "failed", "/reasons/all_start_requests_failed": 1}
    assert result.items == []
    assert trap.connections == []
    assert stat_items(result.stats, "wfcrawl/ssrf/") == {"refused": 1, "refused/loopback": 1}


def test_the_browser_never_reaches_an_internal_address(crawl: Callable[..., Crawl], trap: Trap) -> None:
    if importlib.util.find_spec("scrapy_playwright") is None:
        require_service("scrapy-playwright", False, "pip install 'wfcrawl[browser]'")
    require_service("Chromium", shutil.which("chromium") is not None, "apt-get install chromium")
    pages = site(trap)
    try:
        workflow = f"""\
            name: browser
            obey_robots: false
            start_urls: [{pages.url}/rendered, {pages.url}/rendered-refresh, {pages.url}/redirect]
            phases:
              page:
                render: {{wait_until: load, idle: 0.5}}
                nodes:
                  - {{type: extract, item: page, fields: {{h: h1, done: "#done"}}}}
            """
        result = crawl(workflow, *GUARD, "-s", "WFCRAWL_RENDER_RETRY_TIMES=0")
    finally:
        pages.close()
    assert result.returncode == 0, result.stderr
    assert trap.connections == []
    # The page itself rendered (its script ran): only what pointed at the trap failed.
    assert {"h": "rendered", "done": "done"} in result.fields("page")
    refused = result.stats.get("wfcrawl/render/ssrf_refused", 0)
    # Subresources, fetch, XHR, WebSocket, iframe, stylesheet, preconnect, the
    # redirect and the meta refresh: each connection attempt refused (a browser
    # may try some twice, or skip a preconnect).
    assert refused >= 7, result.stats
    assert result.stats["wfcrawl/ssrf/refused/loopback"] == result.stats["wfcrawl/ssrf/refused"] >= refused


def test_guard_proxy_tunnels_to_allowed_hosts_and_refuses_the_rest(trap: Trap) -> None:
    """CONNECT (https, wss) through the browser's proxy: a tunnel to what the policy
    allows, 403 for the rest (no connection made), and it listens on loopback only."""
    import asyncio

    refused: list[Refusal] = []

    async def scenario() -> tuple[bytes, bytes, bytes]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = upstream.sockets[0].getsockname()[1]
        proxy = GuardProxy(AddressPolicy.from_list(["127.0.0.1/32"]), refused.append)
        await proxy.start()
        proxy_port = int(proxy.url.rsplit(":", 1)[1])
        assert proxy.url.startswith("http://127.0.0.1:")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            established = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"ping")
            echoed = await reader.read(100)
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            writer.write(f"CONNECT 127.0.0.2:{trap.port} HTTP/1.1\r\n\r\n".encode())
            refusal = await reader.read(1000)
            writer.close()
        finally:
            await proxy.close()
            upstream.close()
        return established, echoed, refusal

    established, echoed, refusal = asyncio.run(scenario())
    assert (established, echoed) == (b"HTTP/1.1 200 Connection Established\r\n\r\n", b"ping")
    assert refusal.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert refusal.endswith(f"SSRF guard: 127.0.0.2 is a loopback address {HINT}".encode())
    assert [r.reason for r in refused] == ["loopback"]
    assert trap.connections == []
