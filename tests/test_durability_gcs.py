"""Redis + GCS: leases wait for their objects' uploads, and the crawl does not wait for rotation to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_crawl
from tests.mockserver import MockServer
from tests.services import GcsEmulator
from tests.test_pipelines_gcs import check_items, emulator, gcs_args, objects  # noqa: F401 - fixture
from tests.test_pipelines_postgres import SHOP
from tests.test_scheduler_distributed import REDIS_URL, prefix, redis_client  # noqa: F401 - fixture
from wfcrawl.distributed.config import Keys
from wfcrawl.distributed.ops import LeaseStore

pytestmark = pytest.mark.requires_redis


def test_releases_wait_for_uploads_and_an_idle_instance_flushes(
    emulator: GcsEmulator, server: MockServer, tmp_path: Path, prefix: str,  # noqa: F811
) -> None:
    # Objects would stay open, and releases wait, for 10 minutes: only the flush
    # an idle instance asks for can end this crawl soon.
    result = run_crawl(
        SHOP, *gcs_args(emulator, "durable", "d1", "-s", "WFCRAWL_GCS_MAX_AGE=600", "-s", "WFCRAWL_GCS_MAX_ITEMS=1000",
                        "-s", "WFCRAWL_REDIS_RELEASE_MAX_WAIT=600", "-s", f"WFCRAWL_REDIS_KEY_PREFIX={prefix}"),
        base_url=server.url_for("/"), tmp_path=tmp_path, env={"REDIS_URL": REDIS_URL}, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = result.stats
    assert stats["finish_reason"] == "finished"
    # Releases waited for the uploads (items sat in open objects), the idle
    # instance asked for the objects, and nothing was held at the end.
    assert stats["wfcrawl/scheduler/releases_delayed"] >= 1
    assert stats["wfcrawl/scheduler/storage_flushes"] >= 1
    assert stats["wfcrawl/scheduler/releases_held"] == 0
    assert stats["wfcrawl/scheduler/released"] == stats["wfcrawl/scheduler/leased"] == 12
    check_items(objects(emulator, "durable/shopstore/d1"), server)
    store = LeaseStore(redis_client(), Keys.for_run(prefix, "shopstore", "d1"), instance="test", lease_ttl=30)
    assert store.counts() == (0, 0)
