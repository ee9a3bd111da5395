"""Scrapy extensions of wfcrawl."""
