"""The SSRF policy where connections are made: Twisted's resolver, aiohttp's, urllib's.

A check of the URL alone is not enough: the host is resolved again to connect,
and a DNS server that answers differently within seconds (DNS rebinding) would
get past a check made earlier. Each resolver here applies
:class:`~wfcrawl.security.ssrf.AddressPolicy` to the very address handed to the
connection.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from scrapy.resolver import CachingThreadedResolver
from twisted.internet.error import DNSLookupError

from wfcrawl.security.ssrf import AddressPolicy, Refusal, system_resolver
from wfcrawl.settings.table import read

logger = logging.getLogger(__name__)


def policy_from_settings(settings: Any) -> AddressPolicy | None:
    """The policy of a crawl, or None when ``WFCRAWL_SSRF_GUARD_ENABLED`` is off."""
    if not read(settings, "WFCRAWL_SSRF_GUARD_ENABLED"):
        return None
    return AddressPolicy.from_list(read(settings, "WFCRAWL_SSRF_ALLOWED_NETWORKS"))


class SSRFResolutionRefused(DNSLookupError):  # noqa: N818 - named like SSRFBlocked
    """The address a host resolved to when connecting is refused by the policy.

    A DNSLookupError, because that is the one failure Twisted's name resolution
    passes on quietly: the request then fails as a host without an address
    would (Scrapy's ``CannotResolveHostError``; retried like one, refused again)."""


class GuardedResolver(CachingThreadedResolver):
    """Scrapy's default resolver (cached, threaded) that refuses, with
    :class:`SSRFResolutionRefused`, to hand a refused address to a connection.

    ``TWISTED_DNS_RESOLVER = "wfcrawl.security.resolvers.GuardedResolver"``. Scrapy
    installs the resolver once per process from the process's settings (``-s``
    and the project's, not add-ons): launchers pass it on the command line with
    ``WFCRAWL_SSRF_GUARD_ENABLED``. Without the guard enabled it only resolves.
    A refused host fails its request as an unresolvable one would
    (Scrapy's ``CannotResolveHostError``: ``wfcrawl/pages/failed/CannotResolveHostError``),
    with the reason logged once.
    """

    def __init__(self, reactor: Any, cache_size: int, timeout: float, policy: AddressPolicy | None = None) -> None:
        super().__init__(reactor, cache_size, timeout)
        self.policy = policy
        self._logged: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> GuardedResolver:
        resolver = super().from_crawler(crawler, reactor)  # Scrapy's DNSCACHE_* and DNS_TIMEOUT
        resolver.policy = policy_from_settings(crawler.settings)
        return resolver

    def getHostByName(self, name: str, timeout: Any = ()) -> Any:  # noqa: N802 - Twisted's interface
        resolved = super().getHostByName(name, timeout)
        if self.policy is None:
            return resolved
        return resolved.addCallback(self._check, name)

    def _check(self, address: str, name: str) -> str:
        assert self.policy is not None
        refusal = self.policy.address_refusal(address, name)
        if refusal is None:
            return address
        if name not in self._logged:
            self._logged.add(name)
            logger.warning("SSRF guard refused to connect: %s", refusal.message)
        raise SSRFResolutionRefused(f"SSRF guard: {refusal.message}")


class GuardedAiohttpResolver:
    """An aiohttp resolver (``aiohttp.abc.AbstractResolver``) that drops refused addresses.

    Wraps the connector's own resolver; a host whose every address is refused
    fails to connect with an ``OSError`` saying why (the request fails like an
    unreachable host). An IP literal never reaches a resolver: the SSRF
    middleware refuses those before the handler.
    """

    def __init__(self, policy: AddressPolicy, inner: Any, stats: Any = None) -> None:
        self.policy = policy
        self.inner = inner
        self.stats = stats

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        results: list[Any] = await self.inner.resolve(host, port, family)
        refusals = [r for r in (self.policy.address_refusal(found["host"], host) for found in results) if r]
        if refusals:
            # One refused address refuses the host (as the middleware does).
            if self.stats is not None:
                self.stats.inc_value("wfcrawl/ssrf/refused")
                self.stats.inc_value(f"wfcrawl/ssrf/refused/{refusals[0].reason}")
            raise SSRFRefusedError(refusals[0])
        return results

    async def close(self) -> None:
        await self.inner.close()


def guarded_connection(policy: AddressPolicy) -> Any:
    """A ``socket.create_connection`` that connects only to addresses ``policy`` allows
    (for ``http.client`` connections: resolves once, checks, connects to what it checked)."""

    def create_connection(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
                          source_address: Any = None, **kwargs: Any) -> socket.socket:
        host, port = address
        addresses = system_resolver(host, port) if host else []
        refusal: Refusal | None = None if addresses else Refusal("dns", f"{host} resolves to no address")
        for found in addresses:
            refusal = refusal or policy.address_refusal(found, host)
        if refusal is not None:
            raise SSRFRefusedError(refusal)
        last: OSError | None = None
        for found in addresses:
            try:
                return socket.create_connection((found, port), timeout, source_address)
            except OSError as exc:
                last = exc
        assert last is not None
        raise last

    return create_connection


class SSRFRefusedError(OSError):
    """A connection the policy refused (urllib, http.client)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"SSRF guard: {refusal.message}")
        self.refusal = refusal
