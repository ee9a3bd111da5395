"""Rendering pages in a real browser (Chromium through scrapy-playwright).

A workflow marks a phase, or the links of one ``extract_links`` node, as
rendered with a ``render`` block. The block travels in request meta as plain
data (``wfcrawl_render``); everything that needs Playwright objects is built
right before the download by :class:`wfcrawl.middlewares.render.RenderMiddleware`
and removed again right after it, so rendered requests survive a trip through
Redis like any other.

Modules:

- :mod:`~wfcrawl.workflow.render`: validate and normalise a render block (no Scrapy,
  no Playwright: ``wfcrawl validate`` uses it).
- :mod:`~wfcrawl.render.setup`: settings, finding the browser, installing the
  download handler (used by the spider and the add-on).
- :mod:`~wfcrawl.render.actions`: what happens in the page (Playwright, imported lazily).
- :mod:`~wfcrawl.render.fingerprint`: request fingerprints that tell a rendered
  fetch from a plain one when the workflow asks.

Playwright is an extra: ``pip install 'wfcrawl[browser]'``.
"""
