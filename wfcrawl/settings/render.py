"""Rendering in a browser (docs/rendering.md). The add-on installs scrapy-playwright
only when a workflow renders or ``WFCRAWL_RENDER_ENABLED`` is true."""

from __future__ import annotations

from wfcrawl.settings.table import Setting, register

PAGE = "rendering.md"

SETTINGS = register((
    Setting(
        "WFCRAWL_RENDER_ENABLED", None, "bool", nullable=True, page=PAGE,
        doc="`None`: on when the workflow has a render block. `True`: install the browser handler anyway. "
        "`False`: never; a workflow with a render block then fails at start (`... renders pages in a browser "
        "(render blocks), but WFCRAWL_RENDER_ENABLED is false`).",
    ),
    Setting(
        "WFCRAWL_RENDER_BROWSER_PATH", "", "str", page=PAGE,
        doc="Chromium executable (path or name on `PATH`); empty: the first of `chromium`, `chromium-browser`, "
        "`google-chrome`, `google-chrome-stable` on `PATH`. `PLAYWRIGHT_LAUNCH_OPTIONS[\"executable_path\"]` "
        "wins when set.",
    ),
    Setting(
        # Without the networking flags Chromium calls home at start; on closed
        # networks those connections fail (and cost time).
        "WFCRAWL_RENDER_BROWSER_ARGS",
        [
            "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
        ],
        "list", page=PAGE,
        doc="Chromium flags. Without the networking flags Chromium calls home at start, which fails (slowly) on "
        "closed networks. Playwright adds `--no-sandbox` (needed as root) and `--headless`.",
    ),
    Setting(
        "WFCRAWL_RENDER_CONCURRENCY", 4, "int", minimum=1, page=PAGE,
        doc="Browser pages open at once (see *Concurrency*).",
    ),
    Setting(
        "WFCRAWL_RENDER_TIMEOUT", 30.0, "float", exclusive_minimum=0, page=PAGE,
        doc="Seconds for navigation and each wait, unless the block's `timeout` says otherwise; also "
        "`PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT`.",
    ),
    Setting(
        "WFCRAWL_RENDER_IDLE", 0.5, "float", minimum=0, page=PAGE,
        doc="Network quiet period (seconds) after a scroll or click, unless the block's `idle` says otherwise.",
    ),
    Setting(
        "WFCRAWL_RENDER_RETRY_TIMES", 1, "int", minimum=0, page=PAGE,
        doc="Retries of a rendered page that timed out, crashed or failed in the browser.",
    ),
    Setting(
        "WFCRAWL_RENDER_SCREENSHOT_DIR", "screenshots", "str", required=True, page=PAGE,
        doc="Where screenshots go (`<dir>/<workflow>/<fingerprint>.png`).",
    ),
    Setting(
        "WFCRAWL_RENDER_HTML_DIR", "rendered", "str", required=True, page=PAGE,
        doc="Where rendered HTML goes (`<dir>/<workflow>/<fingerprint>.html`).",
    ),
    Setting(
        # A class path, or the class itself (what REQUEST_FINGERPRINTER_CLASS held).
        "WFCRAWL_RENDER_FINGERPRINTER_BASE", "scrapy.utils.request.RequestFingerprinter", "any",
        required=True, page=PAGE,
        doc="The fingerprinter the render-aware one wraps; the add-on sets it to the "
        "`REQUEST_FINGERPRINTER_CLASS` it replaces.",
    ),
    Setting(
        # An object (wfcrawl.security.proxy.GuardProxy), set by install_rendering.
        "WFCRAWL_RENDER_GUARD_PROXY", None, "any", nullable=True, page=PAGE,
        doc="Set by the add-on, not by you: the crawl's `GuardProxy` (an object) when `WFCRAWL_SSRF_GUARD_ENABLED` "
        "(see *Untrusted documents*).",
    ),
))
