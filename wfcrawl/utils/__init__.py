"""Plumbing shared by wfcrawl's components: threads, back-pressure, retries (no Scrapy component here)."""
