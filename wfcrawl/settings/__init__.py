"""Scrapy project settings of the wfcrawl project (``scrapy.cfg`` points here).

Everything wfcrawl itself needs is applied by its add-on, so another Scrapy
project can use wfcrawl with ``ADDONS = {"wfcrawl.addon.WfcrawlAddon": 0}``
and ``SPIDER_MODULES = ["wfcrawl.spiders"]``. Defaults of wfcrawl's own
settings live in :mod:`wfcrawl.settings.defaults`.
"""

BOT_NAME = "wfcrawl"
SPIDER_MODULES = ["wfcrawl.spiders"]
NEWSPIDER_MODULE = "wfcrawl.spiders"
COMMANDS_MODULE = "wfcrawl.commands"
ADDONS = {"wfcrawl.addon.WfcrawlAddon": 0}
