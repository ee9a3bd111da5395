"""Download handlers (``DOWNLOAD_HANDLERS``): the opt-in aiohttp handler."""

from __future__ import annotations

import importlib.util


def aiohttp_handler_available() -> bool:
    """Whether :mod:`wfcrawl.handlers.aiohttp` can load: aiohttp is installed and
    Scrapy (2.19 or later) ships the aiohttp handler it builds on."""
    return (
        importlib.util.find_spec("aiohttp") is not None
        and importlib.util.find_spec("scrapy.core.downloader.handlers._aiohttp") is not None
    )
