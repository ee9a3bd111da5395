"""One log line for a network error, not a traceback.

Scrapy's robots.txt middleware logs a failed robots.txt download with its
traceback (``exc_info=True``): for a refused connection or a DNS failure that
is two chained tracebacks of Twisted internals for what is one fact, which the
retry middleware has already logged in one line ("Gave up retrying <GET
.../robots.txt> ...: Connection was refused by other side"). The add-on adds
:class:`OneLineNetworkErrors` to that logger: its records of network errors
(the exceptions Scrapy retries, ``RETRY_EXCEPTIONS``) lose the traceback and go
down to DEBUG; any other exception keeps both (that one is a bug worth seeing).
"""

from __future__ import annotations

import logging
from functools import cache

from scrapy.utils.misc import load_object

#: Loggers whose network-error records are made one line.
LOGGERS = ("scrapy.downloadermiddlewares.robotstxt",)


@cache
def network_errors() -> tuple[type[BaseException], ...]:
    from scrapy.settings.default_settings import RETRY_EXCEPTIONS

    found: list[type[BaseException]] = []
    for entry in RETRY_EXCEPTIONS:
        try:
            loaded = load_object(entry) if isinstance(entry, str) else entry
        except (ImportError, NameError, AttributeError):  # not in this Scrapy/Twisted version
            continue
        if isinstance(loaded, type) and issubclass(loaded, BaseException):
            found.append(loaded)
    return tuple(found)


class OneLineNetworkErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], network_errors()):
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def install() -> None:
    """Add the filter to :data:`LOGGERS` (once: a second crawler in the process adds nothing)."""
    for name in LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, OneLineNetworkErrors) for f in log.filters):
            log.addFilter(OneLineNetworkErrors())
