"""The control plane ``wfcrawl serve``: one ASGI application (FastAPI on uvicorn) for the
HTTP API, the Pub/Sub push endpoint and the dashboard (:mod:`wfcrawl.web.app`)."""
