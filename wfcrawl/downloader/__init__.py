"""Download handlers (``DOWNLOAD_HANDLERS``) wfcrawl offers besides Scrapy's defaults."""
