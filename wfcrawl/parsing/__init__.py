"""Parse workers: pages parsed in other processes, beside the crawl process.

A Scrapy process runs on one thread, and lxml holds the GIL while it parses and
evaluates XPath, so parsing competes with downloading, scheduling and the item
pipelines for one core. With ``WFCRAWL_PARSE_WORKERS = N`` the WorkflowSpider
sends the pages of *offloadable* phases (only ``extract_links``, ``extract`` and
``paginate`` nodes: they need nothing but the page) to N worker processes and
awaits their outputs; the crawl process turns them into items and requests as it
does for pages it parses itself. Script and form nodes always run in the crawl
process (they get the live response).

Data path (docs/performance.md, "Parse workers")::

    WorkflowSpider.parse --(url, body, encoding, page context)--> ParsePool
        --frame--> worker: Page + Phase.run (the same code as in-process)
        <--frame-- outputs (items, links, node failures), stats, warnings, logs
    WorkflowSpider._outputs: provenance, routing, requests, items

``frames``: the wire format; ``worker``: the worker process
(``python -m wfcrawl.parsing.worker``); ``pool``: the crawl process's side
(asyncio), with restarts and the no-loss rules for workers that die.
"""
