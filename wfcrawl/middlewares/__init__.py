"""wfcrawl's downloader middlewares: SSRF guard, per-slot concurrency, fleet rate limit,
browser rendering, meta refresh (docs/settings.md)."""
