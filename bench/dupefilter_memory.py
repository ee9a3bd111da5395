"""Memory of the shared dupefilter per URL, measured in a real Redis (docs/distributed.md).

Adds N distinct 20-byte fingerprints (Scrapy's request fingerprints are SHA1 digests)
the way the push script does (SADD in set mode; BITFIELD in Bloom mode, at the offsets
wfcrawl.distributed.dupefilter.FilterSpec computes) to fresh keys of a Redis database of
its own, and reports the growth of Redis's used_memory and MEMORY USAGE of the key,
per URL. Run: python bench/dupefilter_memory.py [--urls 1000000] [--redis redis://127.0.0.1:6379/14]
"""

from __future__ import annotations

import argparse
import hashlib
import uuid

import redis

from wfcrawl.distributed.config import BloomSize
from wfcrawl.distributed.dupefilter import FilterSpec


def measure(client: redis.Redis, key: str, fill: object) -> tuple[float, int]:
    before = int(client.info("memory")["used_memory"])
    fill()  # type: ignore[operator]
    after = int(client.info("memory")["used_memory"])
    return after - before, int(client.memory_usage(key, samples=0) or 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--error-rate", type=float, default=0.001)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis)
    n = args.urls
    prints = [hashlib.sha1(f"https://shop.example/product/{i}".encode()).digest() for i in range(n)]
    run = uuid.uuid4().hex[:8]
    set_key, bloom_key = f"dupefilter-bench:{run}:set", f"dupefilter-bench:{run}:bloom"

    def fill_set() -> None:
        pipe = client.pipeline(transaction=False)
        for i in range(0, n, 1000):
            pipe.sadd(set_key, *prints[i:i + 1000])
        pipe.execute()

    size = BloomSize.for_capacity(n, args.error_rate)
    spec = FilterSpec(None, size)

    def fill_bloom() -> None:
        pipe = client.pipeline(transaction=False)
        for i, fingerprint in enumerate(prints):
            field = client.bitfield(bloom_key)
            for offset in spec.args_for(fingerprint):
                field.set("u1", offset, 1)
            pipe.execute_command(*field.command)
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()

    try:
        for name, key, fill in (("set", set_key, fill_set), (f"bloom ({args.error_rate:g})", bloom_key, fill_bloom)):
            grown, usage = measure(client, key, fill)
            print(f"{name:<14} {n:>9} URLs: used_memory +{grown / n:6.2f} bytes/URL, "
                  f"MEMORY USAGE {usage / n:6.2f} bytes/URL")
        print(f"bloom: {size.bits} bits, {size.hashes} hashes")
    finally:
        client.delete(set_key, bloom_key)


if __name__ == "__main__":
    main()
