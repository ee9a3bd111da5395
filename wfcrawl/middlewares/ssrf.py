"""SSRF guard: untrusted workflows may not make the crawler fetch internal addresses.

A workflow that arrives by Pub/Sub message or through the API is written by
someone else; without this guard its start URLs (or a redirect from a public
page) could make the crawler read the cloud metadata server
(``169.254.169.254``: service-account tokens), services on loopback, or the
private network the crawler runs in.

:class:`AddressPolicy` decides (no Scrapy needed: launchers use it to refuse
such start URLs before anything starts); :class:`SSRFGuardMiddleware` applies
it to every request of a crawl, after DNS resolution, including every redirect
and robots.txt request (Scrapy sends each of them through the downloader
middlewares again). Enabled by ``WFCRAWL_SSRF_GUARD_ENABLED`` (launchers turn it
on for the crawls they start); ``WFCRAWL_SSRF_ALLOWED_NETWORKS`` lists the
networks an operator allows anyway (tests allow loopback).

The middleware resolves the host itself, and Twisted resolves it again to
connect: a DNS server that answers differently within seconds (DNS rebinding)
would get past a check made only in the middleware. :class:`GuardedResolver`
closes that: as Scrapy's DNS resolver (``TWISTED_DNS_RESOLVER``; launchers set
it) it applies the same policy to the very address the connection is made to.
Not covered (docs/launching.md): the opt-in aiohttp download handler (its own
resolver: the middleware's check only) and a browser's own sub-requests.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.resolver import CachingThreadedResolver
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.error import DNSLookupError
from twisted.internet.threads import deferToThread

from wfcrawl.exceptions import ConfigurationError

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

#: Instance metadata services (GCP/AWS/Azure/OpenStack, AWS IPv6, ECS tasks, Alibaba).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
ALLOWED_SCHEMES = frozenset({"http", "https"})
_HINT = "allow it with WFCRAWL_SSRF_ALLOWED_NETWORKS"


class SSRFBlocked(IgnoreRequest):
    """A request the SSRF guard refused (the request's errback receives it)."""


@dataclass(frozen=True)
class Refusal:
    reason: str  # stats key part: loopback, private, link_local, cloud_metadata, ...
    message: str  # for people: "127.0.0.1 is a loopback address"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def classify(address: IPAddress) -> str | None:
    """Why ``address`` is internal (a reason key), or None for a public address."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return classify(embedded)
    if address in METADATA_ADDRESSES:
        return "cloud_metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified or address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non_public"  # e.g. 100.64.0.0/10, carrier-grade NAT
    return None


_DESCRIPTIONS = {
    "cloud_metadata": "a cloud metadata address",
    "loopback": "a loopback address",
    "link_local": "a link-local address",
    "multicast": "a multicast address",
    "reserved": "a reserved address",
    "private": "a private address",
    "non_public": "not a public address",
}


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (blocking: call it off the reactor thread)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos})


@dataclass(frozen=True)
class AddressPolicy:
    """Which URLs a crawl of an untrusted workflow may fetch."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_list(cls, entries: Iterable[str]) -> AddressPolicy:
        networks: list[IPNetwork] = []
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as exc:
                raise ConfigurationError(
                    f"WFCRAWL_SSRF_ALLOWED_NETWORKS: {entry!r} is not a network (CIDR) or address: {exc}"
                ) from None
        return cls(tuple(networks))

    def address_refusal(self, text: str, host: str) -> Refusal | None:
        address = ipaddress.ip_address(text)
        if any(address in net for net in self.allowed_networks if net.version == address.version):
            return None
        reason = classify(address)
        if reason is None:
            return None
        shown = text if text == host else f"{host} resolves to {text}, which"
        return Refusal(reason, f"{shown} is {_DESCRIPTIONS[reason]} ({_HINT})")

    def static_refusal(self, url: str) -> tuple[Refusal | None, str | None]:
        """The checks that need no DNS: (refusal, host to resolve or None)."""
        parts = urlsplit(url)
        if parts.scheme not in ALLOWED_SCHEMES:
            return Refusal("scheme", f"{parts.scheme or 'no'} scheme: only http and https URLs are allowed"), None
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            return Refusal("no_host", "the URL has no host"), None
        if host in METADATA_HOSTS or host.endswith(".internal"):
            return Refusal("cloud_metadata", f"{host} is a cloud metadata host name"), None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None, host
        return self.address_refusal(host, host), None

    def host_refusal(self, host: str, port: int, resolve: Resolver = system_resolver) -> Refusal | None:
        """Resolve ``host``: refused when any of its addresses is refused (blocking)."""
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            # Refuse rather than let Twisted resolve it later to something we never saw.
            return Refusal("dns", f"cannot resolve {host}: {exc}")
        if not addresses:
            return Refusal("dns", f"{host} resolves to no address")
        for address in addresses:
            refusal = self.address_refusal(address, host)
            if refusal is not None:
                return refusal
        return None

    def url_refusal(self, url: str, resolve: Resolver = system_resolver) -> Refusal | None:
        """The full check of one URL (blocking: resolves DNS)."""
        refusal, host = self.static_refusal(url)
        if refusal is not None or host is None:
            return refusal
        return self.host_refusal(host, url_port(url), resolve)


def url_port(url: str) -> int:
    """The URL's port, or its scheme's default."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return port or (443 if parts.scheme == "https" else 80)


class SSRFGuardMiddleware:
    """Refuses requests to internal addresses (``WFCRAWL_SSRF_GUARD_ENABLED``).

    Counts ``wfcrawl/ssrf/refused`` and ``wfcrawl/ssrf/refused/<reason>``; logs
    the reason once per host; the request fails with :class:`SSRFBlocked`.
    """

    #: Host verdicts kept per crawl (DNS is resolved once per host, in a thread).
    CACHE_SIZE = 4096

    def __init__(self, crawler: Crawler, policy: AddressPolicy) -> None:
        self.crawler = crawler
        self.policy = policy
        self._verdicts: dict[tuple[str, int], Refusal | None] = {}
        self._logged: set[tuple[str, str]] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SSRFGuardMiddleware:
        if not crawler.settings.getbool("WFCRAWL_SSRF_GUARD_ENABLED"):
            raise NotConfigured
        policy = AddressPolicy.from_list(crawler.settings.getlist("WFCRAWL_SSRF_ALLOWED_NETWORKS"))
        return cls(crawler, policy)

    async def process_request(self, request: Request) -> None:
        refusal, host = self.policy.static_refusal(request.url)
        if refusal is None and host is not None:
            key = (host, url_port(request.url))
            if key not in self._verdicts:
                if len(self._verdicts) >= self.CACHE_SIZE:
                    self._verdicts.clear()
                self._verdicts[key] = await maybe_deferred_to_future(
                    deferToThread(self.policy.host_refusal, *key)
                )
            refusal = self._verdicts[key]
        if refusal is not None:
            self._refuse(request, refusal)

    def _refuse(self, request: Request, refusal: Refusal) -> Any:
        stats = self.crawler.stats
        assert stats is not None
        stats.inc_value("wfcrawl/ssrf/refused")
        stats.inc_value(f"wfcrawl/ssrf/refused/{refusal.reason}")
        host = urlsplit(request.url).hostname or ""
        if (host, refusal.reason) not in self._logged:
            self._logged.add((host, refusal.reason))
            logger.warning("SSRF guard refused %s: %s", request.url, refusal.message,
                           extra={"spider": self.crawler.spider})
        raise SSRFBlocked(f"SSRF guard: {refusal.message}")


class SSRFResolutionRefused(DNSLookupError):  # noqa: N818 - named like SSRFBlocked
    """The address a host resolved to when connecting is refused by the policy.

    A DNSLookupError, because that is the one failure Twisted's name resolution
    passes on quietly: the request then fails as a host without an address
    would (Scrapy's ``CannotResolveHostError``; retried like one, refused again)."""


class GuardedResolver(CachingThreadedResolver):
    """Scrapy's default resolver (cached, threaded) that refuses, with
    :class:`SSRFResolutionRefused`, to hand a refused address to a connection.

    ``TWISTED_DNS_RESOLVER = "wfcrawl.middlewares.ssrf.GuardedResolver"``. Scrapy
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
        settings = crawler.settings
        if settings.getbool("WFCRAWL_SSRF_GUARD_ENABLED"):
            resolver.policy = AddressPolicy.from_list(settings.getlist("WFCRAWL_SSRF_ALLOWED_NETWORKS"))
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
