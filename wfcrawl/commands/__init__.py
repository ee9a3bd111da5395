"""Scrapy commands of the wfcrawl project (``COMMANDS_MODULE``)."""
