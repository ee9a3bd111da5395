"""Rendering settings: when the browser is used, which browser, how it is wired.

Two moments, both before the crawler freezes its settings:

1. ``WorkflowSpider.from_crawler`` calls :func:`apply_render_policy`: a workflow
   with a render block turns ``WFCRAWL_RENDER_ENABLED`` on (``spider`` priority).
2. The add-on (which Scrapy runs after the spider is created) calls
   :func:`install_rendering`: when rendering is on, it finds the browser and
   installs scrapy-playwright's download handler for http/https, the render
   middleware, the render slot and the render-aware fingerprinter.

When rendering is off nothing of this is installed and Playwright is never
imported. When it is on, requests without ``meta["playwright"]`` still go through
Scrapy's own HTTP/1.1 handler: scrapy-playwright's handler subclasses it and
hands them to it unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from typing import Any

from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings
from scrapy.utils.misc import load_object

from wfcrawl.exceptions import ConfigurationError
from wfcrawl.security.proxy import GuardProxy
from wfcrawl.security.resolvers import policy_from_settings
from wfcrawl.settings.table import Config, read, setting
from wfcrawl.workflow.render import plan_renders

ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
PLAYWRIGHT_HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
MIDDLEWARE = "wfcrawl.middlewares.render.RenderMiddleware"
#: Close to the downloader: its process_request runs last (nothing after it sees
#: Playwright objects) and its process_response/process_exception first (they are
#: gone before the retry middleware copies the request).
MIDDLEWARE_ORDER = 950
FINGERPRINTER = "wfcrawl.render.fingerprint.RenderFingerprinter"
#: Download slot shared by all rendered requests (see docs/rendering.md).
SLOT = "wfcrawl-render"
#: The browser context of a crawl (one: cookies and cache shared like one user's).
CONTEXT = "wfcrawl"
#: Setting holding the crawl's GuardProxy (an object) when the SSRF guard is on.
GUARD_PROXY = "WFCRAWL_RENDER_GUARD_PROXY"
#: Tried in order on PATH when WFCRAWL_RENDER_BROWSER_PATH is empty.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass(frozen=True)
class RenderConfig(Config):
    """The ``WFCRAWL_RENDER_*`` settings, read once."""

    #: ``WFCRAWL_RENDER_ENABLED``: None (unset: no workflow asked) counts as off.
    enabled: bool = setting("WFCRAWL_RENDER_ENABLED", bool)
    browser_path: str = setting("WFCRAWL_RENDER_BROWSER_PATH")
    browser_args: tuple[str, ...] = setting("WFCRAWL_RENDER_BROWSER_ARGS")
    concurrency: int = setting("WFCRAWL_RENDER_CONCURRENCY")
    timeout: float = setting("WFCRAWL_RENDER_TIMEOUT")
    idle: float = setting("WFCRAWL_RENDER_IDLE")
    retry_times: int = setting("WFCRAWL_RENDER_RETRY_TIMES")
    screenshot_dir: str = setting("WFCRAWL_RENDER_SCREENSHOT_DIR")
    html_dir: str = setting("WFCRAWL_RENDER_HTML_DIR")


def rendering_enabled(settings: BaseSettings) -> bool:
    """``WFCRAWL_RENDER_ENABLED``: None (unset: no workflow asked) counts as off."""
    return bool(read(settings, "WFCRAWL_RENDER_ENABLED"))


def apply_render_policy(settings: BaseSettings, plan: Any) -> None:
    """Turn rendering on for a workflow that renders (called by the spider).

    Raises :class:`ConfigurationError` when the workflow renders but rendering
    was switched off explicitly: silently fetching plain pages would yield
    nothing and look like a broken site.
    """
    if not plan_renders(plan):
        return
    if read(settings, "WFCRAWL_RENDER_ENABLED") is False:
        raise ConfigurationError(
            f"workflow {plan.name!r} ({plan.source}) renders pages in a browser (render blocks), "
            "but WFCRAWL_RENDER_ENABLED is false"
        )
    settings.set("WFCRAWL_RENDER_ENABLED", True, priority="spider")


def find_browser(configured: str = "") -> str:
    """The Chromium executable to launch, or a :class:`ConfigurationError` saying what to do."""
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ConfigurationError(
                f"WFCRAWL_RENDER_BROWSER_PATH={configured!r} is not an executable file"
            )
        return found
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    raise ConfigurationError(
        "rendering pages needs Chromium, and none was found on PATH (looked for "
        + ", ".join(BROWSER_NAMES)
        + "). On Debian/Ubuntu: apt-get install chromium. Or set WFCRAWL_RENDER_BROWSER_PATH."
    )


def _set(settings: BaseSettings, name: str, value: Any) -> None:
    """Set at add-on priority, or at the priority of the value being extended."""
    priority = max(settings.getpriority(name) or 0, SETTINGS_PRIORITIES["addon"])
    settings.set(name, value, priority=priority)


def install_rendering(settings: BaseSettings) -> None:
    """Wire scrapy-playwright and wfcrawl's render components (called by the add-on)."""
    if not rendering_enabled(settings):
        return
    config = RenderConfig.from_settings(settings)
    if importlib.util.find_spec("scrapy_playwright") is None:
        raise ConfigurationError(
            "rendering pages needs scrapy-playwright: pip install 'wfcrawl[browser]'"
        )
    _check_reactor(settings)
    _install_handler(settings)
    _install_browser(settings, config)
    _cap_pages(settings, config)
    settings.setdefault_in_component_priority_dict(
        "DOWNLOADER_MIDDLEWARES", load_object(MIDDLEWARE), MIDDLEWARE_ORDER
    )
    _wrap_fingerprinter(settings)


def _check_reactor(settings: BaseSettings) -> None:
    # scrapy-playwright runs Playwright on the asyncio loop under Twisted's reactor.
    if not settings.getbool("TWISTED_REACTOR_ENABLED", True):
        raise ConfigurationError("rendering pages needs a Twisted reactor, but TWISTED_REACTOR_ENABLED is false")
    if settings.get("TWISTED_REACTOR") != ASYNCIO_REACTOR:
        raise ConfigurationError(
            f"rendering pages needs TWISTED_REACTOR={ASYNCIO_REACTOR!r}, not {settings.get('TWISTED_REACTOR')!r}"
        )


def _install_handler(settings: BaseSettings) -> None:
    """scrapy-playwright's download handler (or a subclass a project set) for http and https."""
    handlers = settings.getdict("DOWNLOAD_HANDLERS")
    handler_cls = load_object(PLAYWRIGHT_HANDLER)
    for scheme in ("http", "https"):
        handlers.setdefault(scheme, PLAYWRIGHT_HANDLER)
        configured = handlers[scheme]
        if configured is None or not issubclass(load_object(configured), handler_cls):
            raise ConfigurationError(
                f"rendering pages needs scrapy-playwright's download handler for {scheme}, "
                f"but DOWNLOAD_HANDLERS[{scheme!r}] is {configured!r}"
            )
    _set(settings, "DOWNLOAD_HANDLERS", handlers)


def _install_browser(settings: BaseSettings, config: RenderConfig) -> None:
    """The local browser's launch options (none for a remote one), behind the SSRF guard when it is on."""
    launch = settings.getdict("PLAYWRIGHT_LAUNCH_OPTIONS")
    remote = settings.get("PLAYWRIGHT_CDP_URL") or settings.get("PLAYWRIGHT_CONNECT_URL")
    if not remote:
        launch["executable_path"] = find_browser(launch.get("executable_path") or config.browser_path)
        launch.setdefault("headless", True)
        launch.setdefault("args", list(config.browser_args))
        _set(settings, "PLAYWRIGHT_LAUNCH_OPTIONS", launch)
    _guard_browser(settings, launch, remote=bool(remote))


def _cap_pages(settings: BaseSettings, config: RenderConfig) -> None:
    # Pages are capped twice: by the download slot all rendered requests share
    # (requests waiting for a page wait in that slot, not in a domain's slot, so
    # plain HTTP is never stuck behind the browser) and by scrapy-playwright's
    # per-context semaphore (a guard). The slot never exceeds the per-domain
    # concurrency the workflow promised.
    per_domain = settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN") or config.concurrency
    slots = settings.getdict("DOWNLOAD_SLOTS")
    if SLOT not in slots:
        slots[SLOT] = {"concurrency": min(config.concurrency, per_domain)}
        _set(settings, "DOWNLOAD_SLOTS", slots)
    settings.set("PLAYWRIGHT_MAX_PAGES_PER_CONTEXT", config.concurrency, priority="addon")
    settings.set("PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT", config.timeout * 1000, priority="addon")


def _wrap_fingerprinter(settings: BaseSettings) -> None:
    current = settings.get("REQUEST_FINGERPRINTER_CLASS")
    current_path = current if isinstance(current, str) else f"{current.__module__}.{current.__qualname__}"
    if current_path != FINGERPRINTER:
        # Wrap whatever fingerprinter is configured: same fingerprints, except
        # for rendered requests whose block says `distinct`.
        priority = settings.getpriority("REQUEST_FINGERPRINTER_CLASS") or 0
        settings.set("WFCRAWL_RENDER_FINGERPRINTER_BASE", current, priority=max(priority, SETTINGS_PRIORITIES["addon"]))
        _set(settings, "REQUEST_FINGERPRINTER_CLASS", FINGERPRINTER)


def _guard_browser(settings: BaseSettings, launch: dict[str, Any], *, remote: bool) -> None:
    """With the SSRF guard on, the browser's only way out is a :class:`GuardProxy`."""
    policy = policy_from_settings(settings)
    if policy is None or read(settings, GUARD_PROXY) is not None:
        return
    if remote:
        raise ConfigurationError(
            "the SSRF guard cannot check what a remote browser (PLAYWRIGHT_CDP_URL, PLAYWRIGHT_CONNECT_URL) "
            "connects to: launched crawls render with a local browser"
        )
    if launch.get("proxy"):
        raise ConfigurationError("the SSRF guard sends the browser through its own proxy: "
                                 "PLAYWRIGHT_LAUNCH_OPTIONS may not set 'proxy'")
    proxy = GuardProxy(policy)
    # Loopback is not bypassed (Chromium bypasses it by default); WebRTC may not
    # send UDP around the proxy.
    launch["proxy"] = {"server": proxy.url, "bypass": "<-loopback>"}
    launch["args"] = [*launch.get("args", ()), "--force-webrtc-ip-handling-policy=disable_non_proxied_udp"]
    _set(settings, "PLAYWRIGHT_LAUNCH_OPTIONS", launch)
    # Service workers' requests would bypass Playwright's page routing; here they
    # go through the proxy anyway, but the crawl should not depend on them.
    contexts = settings.getdict("PLAYWRIGHT_CONTEXTS")
    contexts.setdefault(CONTEXT, {}).setdefault("service_workers", "block")
    _set(settings, "PLAYWRIGHT_CONTEXTS", contexts)
    settings.set(GUARD_PROXY, proxy, priority="addon")


def artifact_dir(base: str, workflow: str) -> str:
    """Absolute directory of a workflow's screenshots or HTML files."""
    return os.path.join(os.path.abspath(base), workflow)
