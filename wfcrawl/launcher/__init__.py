"""Services that start crawls: the HTTP API, the Pub/Sub push endpoint and pull
listener, and the shared launch path they all use (:mod:`wfcrawl.launcher.launch`).

See docs/launching.md. Nothing is imported here: the spider imports
:mod:`wfcrawl.workflow.bundled`, and must not pay for the services.
"""
