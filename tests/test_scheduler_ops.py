"""The distributed crawl's Redis side (Lua scripts, keys, dupefilter, serializer) against a real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from scrapy import Request, Spider
from scrapy.http import FormRequest
from scrapy.settings import Settings
from scrapy.utils.request import RequestFingerprinter
from scrapy.utils.test import get_crawler

from tests.conftest import require_service
from wfcrawl.distributed import serializer
from wfcrawl.distributed.config import BloomSize, Keys, RedisCrawlConfig, keys_for_spider
from wfcrawl.distributed.dupefilter import FilterSpec, RedisDupeFilter
from wfcrawl.distributed.ops import LeaseStore, Push, SyncBatch
from wfcrawl.distributed.queue import request_from_payload
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.settings.defaults import DEFAULTS
from wfcrawl.spiders.workflow import WorkflowSpider
from wfcrawl.workflow import load_text

pytestmark = pytest.mark.requires_redis
REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_client() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        require_service("Redis", False, f"{REDIS_URL}: {exc}")
    return client


@pytest.fixture
def client() -> Iterator[Any]:
    c = redis_client()
    yield c
    c.close()


@pytest.fixture
def keys(client: Any) -> Iterator[Keys]:
    k = Keys.for_run(f"wfcrawl-test-{uuid.uuid4().hex[:8]}", "wf", "run-1")
    yield k
    names = list(client.scan_iter(match=k.pattern))
    if names:
        client.delete(*names)


def store(client: Any, keys: Keys, instance: str = "a", ttl: float = 30.0, mode: str = "set",
          lifo: bool = True) -> LeaseStore:
    return LeaseStore(client, keys, instance=instance, lease_ttl=ttl, mode=mode, lifo=lifo)


def push(url: str, priority: int = 0, fp: bytes | None = None) -> Push:
    return Push(-priority, (fp if fp is not None else url.encode(),), url.encode())


def urls(got: tuple[tuple[bytes, bytes], ...]) -> list[str]:
    return [payload.decode() for _, payload in got]


def test_push_lease_release_cycle(client: Any, keys: Keys) -> None:
    s = store(client, keys)
    first = s.sync(SyncBatch(pushes=[push("a"), push("b"), push("c", priority=5), push("a")]), "tok")
    assert (first.lost_state, first.token, first.pushed, first.duplicates, first.queued) == (False, "tok", 3, 1, 3)
    got = s.sync(SyncBatch(token="tok", want=2))
    # priority first, then last-in first-out within a priority (Scrapy's default order)
    assert urls(got.got) == ["c", "b"]
    assert (got.queued, got.leased) == (1, -1)  # leases are only counted when the queue is empty
    assert s.owners() == {m: "a" for m, _ in got.got}
    done = s.sync(SyncBatch(token="tok", releases=[m for m, _ in got.got], want=5))
    assert (done.released, urls(done.got), done.queued, done.leased) == (2, ["a"], 0, 1)
    end = s.sync(SyncBatch(token="tok", releases=[m for m, _ in done.got]))
    assert (end.released, end.queued, end.leased) == (1, 0, 0)
    assert client.hlen(keys.data) == 0 and client.hlen(keys.owners) == 0
    assert client.scard(keys.seen) == 3  # the filter outlives the queue


def test_fifo_order_within_a_priority(client: Any, keys: Keys) -> None:
    s = store(client, keys, lifo=False)
    s.sync(SyncBatch(pushes=[push("a"), push("b"), push("c", priority=-1), push("d")]), "tok")
    assert urls(s.sync(SyncBatch(token="tok", want=4)).got) == ["a", "b", "d", "c"]


def test_dont_filter_requests_are_never_deduplicated(client: Any, keys: Keys) -> None:
    s = store(client, keys)
    r = s.sync(SyncBatch(pushes=[Push(0, (), b"form"), Push(0, (), b"form")]), "tok")
    assert (r.pushed, r.duplicates, r.queued) == (2, 0, 2)


def test_expired_leases_go_back_to_the_queue_and_the_late_owner_cannot_touch_them(client: Any, keys: Keys) -> None:
    dead = store(client, keys, instance="dead", ttl=0.3)
    live = store(client, keys, instance="live", ttl=30)
    dead.sync(SyncBatch(pushes=[push("x", priority=3), push("y")]), "tok")
    taken = dead.sync(SyncBatch(token="tok", want=2))
    assert urls(taken.got) == ["x", "y"]
    deadline = time.monotonic() + 10
    got: list[str] = []
    requeued = 0
    while len(got) < 2 and time.monotonic() < deadline:  # poll: the lease TTL is Redis-side time
        r = live.sync(SyncBatch(token="tok", want=2))
        requeued += r.requeued
        got += urls(r.got)
        mine = r.got
    assert (sorted(got), requeued) == (["x", "y"], 2)
    assert set(live.owners().values()) == {"live"}
    # The dead instance wakes up: its renewals report the leases lost, its
    # releases change nothing.
    late = dead.sync(SyncBatch(token="tok", releases=[taken.got[0][0]], renewals=[taken.got[1][0]]))
    assert (late.released, late.lost_leases, late.leased) == (0, (taken.got[1][0],), 2)
    assert live.sync(SyncBatch(token="tok", releases=[m for m, _ in mine])).leased == 0


def test_returned_leases_are_queued_again_at_once(client: Any, keys: Keys) -> None:
    s = store(client, keys)
    s.sync(SyncBatch(pushes=[push("x", priority=2)]), "tok")
    member = s.sync(SyncBatch(token="tok", want=1)).got[0][0]
    r = s.sync(SyncBatch(token="tok", returns=[member]))
    assert (r.returned, r.queued, r.leased) == (1, 1, -1)
    again = s.sync(SyncBatch(token="tok", want=1))
    assert urls(again.got) == ["x"] and again.got[0][0] != member and again.got[0][0].endswith(b":-2")
    assert again.leased == 1


def test_expired_leases_stay_until_a_call_asks_for_reaping(client: Any, keys: Keys) -> None:
    dead = store(client, keys, instance="dead", ttl=0.2)
    live = store(client, keys, instance="live", ttl=30)
    dead.sync(SyncBatch(pushes=[push("x")]), "tok")
    dead.sync(SyncBatch(token="tok", want=1))
    time.sleep(0.4)
    assert (live.sync(SyncBatch(token="tok", want=1, reap=False)).requeued, live.counts()) == (0, (0, 1))
    assert live.sync(SyncBatch(token="tok", want=1)).requeued == 1


def test_renewal_keeps_a_lease_alive(client: Any, keys: Keys) -> None:
    s = store(client, keys, ttl=1.0)
    other = store(client, keys, instance="b")
    s.sync(SyncBatch(pushes=[push("x")]), "tok")
    member = s.sync(SyncBatch(token="tok", want=1)).got[0][0]
    before = client.zscore(keys.leases, member)
    r = s.sync(SyncBatch(token="tok", renewals=[member]))
    assert r.lost_leases == () and client.zscore(keys.leases, member) >= before
    assert other.sync(SyncBatch(token="tok", want=1)).got == ()


def test_lost_state_is_reported_not_recreated(client: Any, keys: Keys) -> None:
    s = store(client, keys)
    assert s.sync(SyncBatch(pushes=[push("x")]), "tok").token == "tok"
    assert s.sync(SyncBatch(), "other").token == "tok"  # a joining instance adopts the run's epoch
    client.delete(*client.scan_iter(match=keys.pattern))  # what a restart without persistence does
    r = s.sync(SyncBatch(token="tok", pushes=[push("y")]))
    assert (r.lost_state, r.token) == (True, "")
    assert list(client.scan_iter(match=keys.pattern)) == []  # nothing written after the loss


def test_bloom_mode(client: Any, keys: Keys) -> None:
    size = BloomSize.for_capacity(1000, 0.01)
    assert (size.bits, size.hashes) == (9586, 7)
    spec = FilterSpec(RequestFingerprinter(), size)
    s = store(client, keys, mode="bloom")
    reqs = [Request(f"http://x/{i}") for i in range(50)]
    pushes = [Push(0, spec.args(r), r.url.encode()) for r in reqs]
    r1 = s.sync(SyncBatch(pushes=[*pushes, pushes[0]]), "tok")
    assert (r1.pushed, r1.duplicates) == (50, 1)
    r2 = s.sync(SyncBatch(token="tok", pushes=pushes[:10]))
    assert (r2.pushed, r2.duplicates, r2.queued) == (0, 10, 50)
    assert client.strlen(keys.seen) <= size.bits // 8 + 1


def test_bloom_sizes_documented() -> None:
    assert BloomSize.for_capacity(1_000_000, 0.001) == BloomSize(14_377_588, 10)
    with pytest.raises(ConfigurationError, match="more than one Redis string holds"):
        BloomSize.for_capacity(10**9, 0.0001)


def test_shared_rate_reservations_are_spaced_by_the_delay(client: Any, keys: Keys) -> None:
    a, b = store(client, keys, "a"), store(client, keys, "b")
    waits = [a.reserve("site", 0.5), b.reserve("site", 0.5), a.reserve("site", 0.5)]
    assert waits[0] == 0
    # Each reservation is 0.5 s after the previous one, less the time the calls took.
    assert 0.4 < waits[1] <= 0.5 and 0.9 < waits[2] <= 1.0
    assert a.reserve("other-site", 0.5) == 0


def test_keys_are_namespaced_by_workflow_and_run() -> None:
    assert Keys.for_run("wfcrawl", "shop", "r1").queue == "wfcrawl:{shop:r1}:queue"
    assert Keys.for_run("wfcrawl", "shop", "r1").pattern == "wfcrawl:\\{shop:r1\\}:*"
    with pytest.raises(ConfigurationError, match="cannot name Redis keys"):
        Keys.for_run("wfcrawl", "shop", "a}b")


MINIMAL = "name: minimal\nstart_urls: [http://x/]\nphases: {a: {nodes: [{type: extract, item: t, fields: {x: h1}}]}}\n"


class _Spider(Spider):
    name = "s"

    def parse(self, response: Any, **kwargs: Any) -> None: ...

    def on_error(self, failure: Any) -> None: ...


def test_a_generated_execution_id_is_refused() -> None:
    config = RedisCrawlConfig.from_settings(Settings(DEFAULTS))
    # A project's own spider names its run with an execution_id attribute.
    crawler = get_crawler(_Spider)
    crawler.spider = _Spider.from_crawler(crawler, execution_id="abc")
    assert keys_for_spider(crawler.spider, config).base == "wfcrawl:{s:abc}:"
    crawler.spider = _Spider.from_crawler(crawler)
    with pytest.raises(ConfigurationError, match="same execution id"):
        keys_for_spider(crawler.spider, config)
    # The workflow spider generated an id (none was given): each instance would crawl alone.
    workflow_spider = WorkflowSpider()
    workflow_spider.plan, workflow_spider.execution_id = load_text(MINIMAL), "generated"
    workflow_spider.execution_id_given = False
    crawler.spider = workflow_spider
    workflow_spider.crawler = crawler
    with pytest.raises(ConfigurationError, match="same execution id"):
        keys_for_spider(workflow_spider, config)
    workflow_spider.execution_id_given = True
    assert keys_for_spider(workflow_spider, config).base == "wfcrawl:{minimal:generated}:"


def test_requests_round_trip_without_pickle() -> None:
    spider = _Spider()
    meta = {
        "wfcrawl_phase": "detail", "wfcrawl_marker": "product", "wfcrawl_markers": ["start", "product"],
        "wfcrawl_depth": 2, "wfcrawl_page": 3, "wfcrawl_render": {"wait": {"selector": "h1"}},
        "nested": {"$dollar": 1, 2: "int key", "b": b"\x00\xff"}, "depth": 2,
    }
    original = FormRequest(
        "http://x/login", formdata={"user": "demo"}, callback=spider.parse, errback=spider.on_error,
        meta=meta, priority=-7, headers={"X-Token": "t"}, cb_kwargs={"a": [1, 2]}, dont_filter=True,
    )
    data = serializer.dumps(original.to_dict(spider=spider))
    assert b"pickle" not in data and data.startswith(b"{")
    copy = request_from_payload(serializer, data, spider)
    assert type(copy) is FormRequest
    assert (copy.url, copy.method, copy.body, copy.priority, copy.dont_filter) == (
        original.url, "POST", b"user=demo", -7, True)
    assert copy.meta == meta and copy.cb_kwargs == {"a": [1, 2]}
    assert copy.headers.to_unicode_dict() == original.headers.to_unicode_dict()
    assert (copy.callback, copy.errback) == (spider.parse, spider.on_error)


@pytest.mark.parametrize(("change", "message"), [
    ({"_class": "os.system"}, "request class 'os.system' is not allowed"),
    ({"callback": "close"}, "callback 'close' is not a callback of spider 's'"),
    ({"errback": "__init__"}, "errback '__init__' is not a callback of spider 's'"),
    ({"callback": "nope"}, "callback 'nope' is not a callback of spider 's'"),
])
def test_requests_from_redis_cannot_name_other_code(change: dict[str, str], message: str) -> None:
    spider = _Spider()
    data = serializer.dumps({**Request("http://x/").to_dict(spider=spider), **change})
    with pytest.raises(ValueError, match=message):
        request_from_payload(serializer, data, spider)


def test_values_that_are_not_data_are_named() -> None:
    with pytest.raises(serializer.SerializationError, match=r"meta\['page'\] holds a object"):
        serializer.dumps({"meta": {"page": object()}})


def test_local_dupefilter_answers_from_what_this_process_queued() -> None:
    df = RedisDupeFilter(FilterSpec(RequestFingerprinter(), None), local_max=2)
    a, b, c = Request("http://x/a"), Request("http://x/b"), Request("http://x/c")
    assert [df.request_seen(r) for r in (a, a, b)] == [False, True, False]
    assert df.request_seen(c) is False  # memory full: forgotten, the shared filter still decides
    assert df.request_seen(a) is False
