"""Executions and the audit log in a local SQLite file: ``wfcrawl serve``'s embedded default."""
