"""wfcrawl's item pipelines: validation, PostgreSQL, Cloud Storage (docs/storage.md)."""
