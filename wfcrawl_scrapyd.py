"""The settings module of a wfcrawl egg deployed to scrapyd: the egg's code is what runs.

scrapyd activates a job's egg by *appending* it to ``sys.path``
(``pkg_resources.Distribution.activate``), so a wfcrawl installed on the scrapyd
host would be imported instead of the egg just deployed. The egg's ``scrapy``
entry point names this module, and scrapyd's runner imports it first
(``SCRAPY_SETTINGS_MODULE``), before anything imports wfcrawl: it moves the egg
that holds wfcrawl to the front of ``sys.path``, then takes wfcrawl's project
settings from it. (An *editable* install of wfcrawl is found by an import hook,
not through ``sys.path``: it still wins; the crawl's log then says where wfcrawl
came from. Keep scrapyd hosts to requirements.txt: docs/launching.md#scrapyd.)
"""

import os
import sys
import zipfile


def _egg_first() -> None:
    if "wfcrawl" in sys.modules:  # imported already: too late to choose
        return
    for entry in sys.path:
        if entry.endswith(".egg") and os.path.isfile(entry) and zipfile.is_zipfile(entry):
            with zipfile.ZipFile(entry) as egg:
                if "wfcrawl/__init__.py" not in egg.namelist():
                    continue
            sys.path.remove(entry)
            sys.path.insert(0, entry)
            return


_egg_first()

from wfcrawl.settings import *  # noqa: E402, F403
