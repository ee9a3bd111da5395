"""What happens inside a browser page for a render block.

:class:`PageScript` is built per download by the render middleware; its
:meth:`~PageScript.attach` runs before navigation (scrapy-playwright's page
init callback) and :meth:`~PageScript.run` after it (a page method). Everything
here runs on the reactor's asyncio loop; files are written by Playwright's own
async file I/O or in a thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

#: Before each click with ``collect``: the body's HTML. Afterwards the states are
#: put back, in order, in front of the final content, inside <template> elements
#: (inert: no script runs and nothing loads, but the HTML is in page.content()).
_RESTORE_SNAPSHOTS = """(states) => {
  const first = document.body.firstChild;
  states.forEach((html, i) => {
    const t = document.createElement('template');
    t.setAttribute('data-wfcrawl-snapshot', String(i));
    t.innerHTML = html;
    document.body.insertBefore(t, first);
  });
}"""

_HEIGHT = "document.scrollingElement ? document.scrollingElement.scrollHeight : document.body.scrollHeight"


class PageScript:
    """The actions of one render block for one page, and their outcome.

    ``block`` is the plain-data render block (see :mod:`wfcrawl.workflow.render`);
    ``screenshot``/``html`` are the file paths to write when the block asks.
    """

    def __init__(
        self,
        block: dict[str, Any],
        *,
        timeout: float,
        idle: float,
        screenshot: str | None,
        html: str | None,
    ) -> None:
        self.block = block
        self.timeout = float(block.get("timeout", timeout))
        self.idle = float(block.get("idle", idle))
        self.screenshot_path = screenshot
        self.html_path = html
        self.inflight = 0
        self.last_change = time.monotonic()
        self.result: dict[str, Any] = {}

    # ------------------------------------------------------------ network

    async def attach(self, page: Any, request: Any) -> None:
        """Count requests in flight from the very first one (before navigation)."""
        page.on("request", self._started)
        page.on("requestfinished", self._ended)
        page.on("requestfailed", self._ended)

    def _started(self, _: Any) -> None:
        self.inflight += 1
        self.last_change = time.monotonic()

    def _ended(self, _: Any) -> None:
        self.inflight = max(0, self.inflight - 1)
        self.last_change = time.monotonic()

    async def wait_idle(self) -> None:
        """Wait until no request has been in flight for ``idle`` seconds.

        Playwright's own "networkidle" is a navigation state, reached once; after
        a click or a scroll only our own count tells whether the page is still
        loading. A page that keeps a request open forever times out here.
        """
        from playwright.async_api import TimeoutError as PlaywrightTimeoutError

        self.last_change = time.monotonic()  # the quiet period starts after the action
        deadline = self.last_change + self.timeout
        while True:
            now = time.monotonic()
            if self.inflight == 0 and now - self.last_change >= self.idle:
                return
            if now >= deadline:
                raise PlaywrightTimeoutError(
                    f"network not idle for {self.idle}s within {self.timeout}s "
                    f"({self.inflight} request(s) in flight)"
                )
            await asyncio.sleep(min(0.05, max(0.0, deadline - now)))

    # ------------------------------------------------------------ actions

    async def run(self, page: Any) -> dict[str, Any]:
        """Wait, scroll, click, capture; returns the plain-data outcome."""
        timeout_ms = self.timeout * 1000
        wait_for = self.block.get("wait_for")
        if wait_for:
            await page.wait_for_selector(wait_for, state="attached", timeout=timeout_ms)
        scrolls = 0
        for _ in range(self.block.get("scroll", 0)):
            height = await page.evaluate(_HEIGHT)
            await page.evaluate(f"window.scrollTo(0, {_HEIGHT})")
            scrolls += 1
            await self.wait_idle()
            if await page.evaluate(_HEIGHT) <= height:
                break  # the page stopped growing: the end of the list
        clicks = 0
        click = self.block.get("click")
        if click:
            states: list[str] = []
            target = page.locator(click["selector"]).first
            for _ in range(click.get("times", 1)):
                if not await target.count() or not await target.is_visible() or not await target.is_enabled():
                    break  # no more pages
                if click.get("collect"):
                    states.append(await page.evaluate("document.body.innerHTML"))
                await target.click(timeout=timeout_ms)
                clicks += 1
                await self.wait_idle()
                if wait_for:
                    await page.wait_for_selector(wait_for, state="attached", timeout=timeout_ms)
            if states:
                await page.evaluate(_RESTORE_SNAPSHOTS, states)
        result: dict[str, Any] = {"scrolls": scrolls, "clicks": clicks}
        if self.screenshot_path:
            shot = self.block.get("screenshot") or {}
            await page.screenshot(path=self.screenshot_path, full_page=bool(shot.get("full_page")))
            result["screenshot"] = self.screenshot_path
        if self.html_path:
            await asyncio.to_thread(_write_text, self.html_path, await page.content())
            result["html"] = self.html_path
        self.result = result
        return result


def _write_text(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")
