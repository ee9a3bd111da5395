"""The local compose stack (docker/compose.yaml), up: `make stack-test` starts it on
locally built images (tools/stack-test.sh) and runs this module with WFCRAWL_STACK_* set.

Opt-in: skipped without WFCRAWL_STACK_API. The crawl target is the stack's `site`
service (a static copy of tests/sites), the bundled `shop` workflow crawls it; items are
read back from PostgreSQL through the stack's PgBouncer.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.launcher_support import http, wait_until

API = os.environ.get("WFCRAWL_STACK_API", "")
pytestmark = pytest.mark.skipif(not API, reason="opt-in: make stack-test (sets WFCRAWL_STACK_*)")
#: What workflows/shop.yaml finds on tests/sites/shop, as rows of the items table.
SHOP_ROWS = {"product": 7, "seller": 2}


def query(sql: str, *args: Any, dbname: str = "") -> list[tuple[Any, ...]]:
    import psycopg2

    dsn = os.environ["WFCRAWL_STACK_DATABASE"]
    if dbname:
        dsn = dsn.rsplit("/", 1)[0] + "/" + dbname
    conn = psycopg2.connect(dsn, connect_timeout=10)
    conn.autocommit = True  # the PgBouncer admin console takes no transactions
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return list(cur.fetchall())
    finally:
        conn.close()


def rows_of(execution_id: str) -> dict[str, int]:
    return dict(query("SELECT item_type, count(*) FROM wfcrawl.items WHERE execution_id = %s GROUP BY item_type",
                      execution_id))


def final(execution_id: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {os.environ['WFCRAWL_STACK_KEY']}"}

    def done() -> dict[str, Any] | None:
        status, _, body = http("GET", f"{API}/v1/executions/{execution_id}", headers=auth)
        if status == 200 and body["execution"]["status"] in ("succeeded", "degraded", "failed", "cancelled"):
            return body["execution"]  # type: ignore[no-any-return]
        return None

    return wait_until(done, 180, f"execution {execution_id}", interval=0.5)  # type: ignore[no-any-return]


def test_the_database_is_reached_through_pgbouncer() -> None:
    # PgBouncer's admin console answers on the port the stack publishes as its database.
    [(version,)] = query("SHOW VERSION", dbname="pgbouncer")
    assert version.startswith("PgBouncer "), version
    assert query("SELECT current_database()") == [("wfcrawl",)]


def test_a_launch_through_the_api_writes_items_to_postgresql() -> None:
    auth = {"Authorization": f"Bearer {os.environ['WFCRAWL_STACK_KEY']}"}
    status, _, body = http("POST", f"{API}/v1/executions",
                           {"workflow": "shop", "args": {"base_url": os.environ["WFCRAWL_STACK_SITE"]}}, auth)
    assert (status, body["started"]) == (201, True), body
    execution = final(body["execution"]["id"])
    assert (execution["status"], execution["reasons"], execution["params"]["origin"]) == ("succeeded", [], "api")
    assert rows_of(execution["id"]) == SHOP_ROWS


def test_a_pubsub_message_is_crawled_by_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", os.environ["WFCRAWL_STACK_PUBSUB"])
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    execution_id = "stack-test-pubsub"
    message = {"workflow": "shop", "args": {"base_url": os.environ["WFCRAWL_STACK_SITE"]},
               "execution_id": execution_id}
    publisher.publish("projects/wfcrawl-local/topics/crawls", json.dumps(message).encode()).result(timeout=30)
    execution = final(execution_id)
    assert (execution["status"], execution["reasons"], execution["params"]["origin"]) == ("succeeded", [], "pubsub-pull")
    assert rows_of(execution_id) == SHOP_ROWS
