"""The wfcrawl Scrapy add-on: wires wfcrawl's components into a project.

``ADDONS = {"wfcrawl.addon.WfcrawlAddon": 0}``. It sets wfcrawl's defaults,
the fast profile (``WFCRAWL_FAST_PROFILE``), the summary extension, and reads
the environment variables that name services (the only place wfcrawl reads
the environment for settings).
"""

from __future__ import annotations

import os

from scrapy.settings import BaseSettings

from wfcrawl.settings.defaults import DEFAULTS, FAST_PROFILE, SAFE_DEFAULTS

#: (setting, component class path), order: what the add-on plugs into Scrapy.
COMPONENTS: tuple[tuple[tuple[str, str], int], ...] = (
    (("EXTENSIONS", "wfcrawl.extensions.summary.CrawlSummary"), 900),
    (("EXTENSIONS", "wfcrawl.extensions.statsfile.StatsFile"), 910),
)

#: Environment variables read into settings of the same name.
ENVIRONMENT_SETTINGS: tuple[str, ...] = ()


class WfcrawlAddon:
    def update_settings(self, settings: BaseSettings) -> None:
        for name, value in DEFAULTS.items():
            settings.set(name, value, priority="default")
        for name in ENVIRONMENT_SETTINGS:
            if os.environ.get(name):
                # Environment beats settings files, the command line beats both.
                settings.set(name, os.environ[name], priority="project")
        for name, value in SAFE_DEFAULTS.items():
            settings.set(name, value, priority="addon")
        if settings.getbool("WFCRAWL_FAST_PROFILE"):
            for name, value in FAST_PROFILE.items():
                settings.set(name, value, priority="addon")
        # setdefault: a project that set (or disabled with None) a component keeps its choice.
        for component, order in COMPONENTS:
            settings.setdefault_in_component_priority_dict(component[0], component[1], order)
