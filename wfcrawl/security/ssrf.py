"""The SSRF policy: which addresses a crawl of an untrusted workflow may connect to.

A workflow that arrives by Pub/Sub message or through the API is written by
someone else; without this policy its start URLs (or a redirect from a public
page, a webhook, a browser's subresource) could make this machine read the
cloud metadata server (``169.254.169.254``: service-account tokens), services
on loopback, or the private network the crawler runs in.

:class:`AddressPolicy` decides, and needs no Scrapy: launchers use it to refuse
start URLs before anything starts, and every channel of a crawl applies it to
the address it connects to (docs/launching.md, "SSRF guard"):

- crawl requests (start URLs, links, redirects, meta refresh, robots.txt, form
  submissions): :class:`wfcrawl.middlewares.ssrf.SSRFGuardMiddleware` (URL, after DNS)
  and :class:`wfcrawl.security.resolvers.GuardedResolver` (Twisted's connection);
- the aiohttp download handler: :class:`wfcrawl.security.resolvers.GuardedAiohttpResolver`;
- webhooks: :func:`wfcrawl.security.resolvers.guarded_connection` (urllib);
- the browser of rendered pages: :class:`wfcrawl.security.proxy.GuardProxy`;
- item schemas: never fetched (:mod:`wfcrawl.workflow.schemas`).

``WFCRAWL_SSRF_ALLOWED_NETWORKS`` lists networks an operator allows anyway.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from wfcrawl.exceptions import ConfigurationError

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
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError as exc:  # "https://[::1": not a URL at all
            return Refusal("invalid_url", f"not a valid URL: {exc}"), None
        if parts.scheme not in ALLOWED_SCHEMES:
            return Refusal("scheme", f"{parts.scheme or 'no'} scheme: only http and https URLs are allowed"), None
        host = (hostname or "").rstrip(".").lower()
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
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return 80
    return port or (443 if parts.scheme in ("https", "wss") else 80)
