"""SSRF guard: internal addresses are refused with a clear reason (policy, launcher
pre-flight, and a real crawl with redirects), unless an operator allows the network."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Crawl, stat_items
from tests.launcher_support import SmallServer, make_launcher
from tests.mockserver import MockServer
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.launch import LaunchRejectedError, LaunchRequest
from wfcrawl.middlewares.ssrf import AddressPolicy, Refusal, classify
from wfcrawl.storage.executions import MemoryExecutionStore

HINT = "(allow it with WFCRAWL_SSRF_ALLOWED_NETWORKS)"


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("fd12::1", "private"),
    ("169.254.169.254", "cloud_metadata"), ("fd00:ec2::254", "cloud_metadata"), ("100.100.100.200", "cloud_metadata"),
    ("169.254.10.10", "link_local"), ("fe80::1", "link_local"),
    ("0.0.0.0", "reserved"), ("240.0.0.1", "reserved"), ("224.0.0.1", "multicast"), ("100.64.0.1", "non_public"),
    # IPv4 inside IPv6 is judged by its IPv4 address.
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "cloud_metadata"),
    ("64:ff9b::a9fe:a9fe", "cloud_metadata"), ("2002:7f00:1::", "loopback"),
    ("8.8.8.8", None), ("2606:4700::1111", None),
])
def test_classify(address: str, reason: str | None) -> None:
    assert classify(ipaddress.ip_address(address)) == reason


def fixed(answers: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError("Name or service not known")
        return answers[host]
    return resolve


def test_url_refusals_after_dns_and_the_allowlist() -> None:
    policy = AddressPolicy()
    dns = fixed({"shop.example": ["93.184.216.34"], "sneaky.example": ["93.184.216.34", "10.0.0.7"]})
    assert policy.url_refusal("https://shop.example/a", dns) is None
    assert policy.url_refusal("http://sneaky.example/", dns) == Refusal(
        "private", f"sneaky.example resolves to 10.0.0.7, which is a private address {HINT}")
    assert policy.url_refusal("http://gone.example/", dns) == Refusal(
        "dns", "cannot resolve gone.example: Name or service not known")
    assert policy.url_refusal("http://[::1]:8080/") == Refusal("loopback", f"::1 is a loopback address {HINT}")
    assert policy.url_refusal("http://metadata.google.internal/computeMetadata/v1/") == Refusal(
        "cloud_metadata", "metadata.google.internal is a cloud metadata host name")
    assert policy.url_refusal("file:///etc/passwd") == Refusal(
        "scheme", "file scheme: only http and https URLs are allowed")
    # Real DNS: localhost is loopback after resolution.
    refusal = policy.url_refusal("http://localhost:8000/")
    assert refusal is not None and refusal.reason == "loopback"
    assert refusal.message.startswith("localhost resolves to ")

    allowed = AddressPolicy.from_list(["127.0.0.0/8", " ", "10.0.0.0/24"])
    assert allowed.url_refusal("http://127.0.0.1:8000/") is None
    assert allowed.url_refusal("http://sneaky.example/", dns) is None
    assert allowed.url_refusal("http://169.254.169.254/") == Refusal(
        "cloud_metadata", f"169.254.169.254 is a cloud metadata address {HINT}")
    with pytest.raises(ConfigurationError, match=r"'10\.0\.0\.0/33' is not a network"):
        AddressPolicy.from_list(["10.0.0.0/33"])


def test_launcher_refuses_internal_start_urls_before_anything_starts(tmp_path: Path) -> None:
    store = MemoryExecutionStore()
    launcher = make_launcher(tmp_path, store, WFCRAWL_SSRF_ALLOWED_NETWORKS=[])  # the production default
    document = "name: probe\nstart_urls: [http://127.0.0.1:6379/, http://169.254.169.254/latest/meta-data/]\n" \
               "phases: {a: {nodes: [{type: extract, item: x, fields: {t: title}}]}}\n"
    with pytest.raises(LaunchRejectedError) as caught:
        launcher.launch(LaunchRequest(document=document))
    assert caught.value.problems == [
        f"start URL http://127.0.0.1:6379/ refused by the SSRF guard: 127.0.0.1 is a loopback address {HINT}",
        "start URL http://169.254.169.254/latest/meta-data/ refused by the SSRF guard: "
        f"169.254.169.254 is a cloud metadata address {HINT}",
    ]
    assert store.list() == []
    assert not (tmp_path / "executions").exists()  # no workflow file written, no process


def test_crawl_refuses_internal_addresses_directly_and_after_redirects(
    crawl: Callable[..., Crawl], server: MockServer
) -> None:
    redirector = SmallServer(lambda path: (302, {"Location": path.split("?to=", 1)[1]}, b""))
    try:
        port = server.port
        workflow = f"""\
            name: ssrf
            obey_robots: false
            # Offsite filtering is no defence: a document chooses its allowed_domains.
            allowed_domains: [127.0.0.1, 127.0.0.2, 169.254.169.254, 10.1.2.3]
            start_urls:
              - {server.url}/shop/product/lp-001.html
              - {redirector.url}/r?to=http://127.0.0.2:{port}/shop/product/lp-002.html
              - {redirector.url}/r?to=http://169.254.169.254/latest/meta-data/
              - http://10.1.2.3/admin
            phases:
              page:
                nodes:
                  - {{type: extract, item: page, fields: {{name: h1.name}}}}
            """
        result = crawl(workflow, "-s", "WFCRAWL_SSRF_GUARD_ENABLED=True",
                       "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=127.0.0.1/32")
    finally:
        redirector.close()
    assert result.returncode == 0, result.stderr
    assert result.fields("page") == [{"name": "Aero 13 Laptop"}]
    assert stat_items(result.stats, "wfcrawl/ssrf/") == {
        "refused": 3, "refused/loopback": 1, "refused/cloud_metadata": 1, "refused/private": 1,
    }
    assert result.stats["wfcrawl/pages/failed/SSRFBlocked"] == 3
    # Both redirects were followed up to the guard, which refused their targets.
    assert sorted(redirector.paths) == sorted([
        f"/r?to=http://127.0.0.2:{port}/shop/product/lp-002.html", "/r?to=http://169.254.169.254/latest/meta-data/",
    ])
    refusals = sorted(line.split("SSRF guard refused ", 1)[1] for line in result.stderr.splitlines()
                      if "SSRF guard refused" in line)
    assert refusals == sorted([
        f"http://127.0.0.2:{port}/shop/product/lp-002.html: 127.0.0.2 is a loopback address {HINT}",
        f"http://169.254.169.254/latest/meta-data/: 169.254.169.254 is a cloud metadata address {HINT}",
        f"http://10.1.2.3/admin: 10.1.2.3 is a private address {HINT}",
    ])


def test_a_bad_allowed_network_fails_the_crawl_at_start(
    crawl: Callable[..., Crawl], server: MockServer
) -> None:
    workflow = f"""\
        name: plain
        obey_robots: false
        start_urls: [{server.url}/shop/product/lp-001.html]
        phases: {{page: {{nodes: [{{type: extract, item: page, fields: {{name: h1.name}}}}]}}}}
        """
    # (Off by default: every other crawl test fetches from 127.0.0.1 without it.)
    broken = crawl(workflow, "-s", "WFCRAWL_SSRF_GUARD_ENABLED=True", "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=lan")
    assert broken.items == []
    assert "WFCRAWL_SSRF_ALLOWED_NETWORKS: 'lan' is not a network (CIDR) or address" in broken.stderr


def test_resolver_checks_the_address_the_connection_is_made_to(
    crawl: Callable[..., Crawl], fresh_server: MockServer
) -> None:
    """DNS rebinding: the middleware's check passed (here: switched off), the host
    resolves to an internal address when connecting; GuardedResolver refuses it."""
    workflow = f"""\
        name: rebinding
        obey_robots: false
        start_urls: [http://localhost:{fresh_server.port}/shop/product/lp-001.html]
        phases: {{page: {{nodes: [{{type: extract, item: page, fields: {{name: h1.name}}}}]}}}}
        """
    resolver_only = ("-s", "WFCRAWL_SSRF_GUARD_ENABLED=True",
                     "-s", "TWISTED_DNS_RESOLVER=wfcrawl.middlewares.ssrf.GuardedResolver",
                     "-s", 'DOWNLOADER_MIDDLEWARES={"wfcrawl.middlewares.ssrf.SSRFGuardMiddleware": null}')
    refused = crawl(workflow, *resolver_only)
    # Its only start request failed: the crawl failed (wfcrawl.outcome).
    assert refused.returncode == 1, refused.stderr
    assert refused.stats["wfcrawl/outcome/reasons/all_start_requests_failed"] == 1
    assert refused.items == []
    # It fails as a host without address would (Scrapy retries those: refused each time).
    assert refused.stats["wfcrawl/pages/failed/CannotResolveHostError"] == 1
    assert fresh_server.paths() == []
    warning = f"SSRF guard refused to connect: localhost resolves to 127.0.0.1, which is a loopback address {HINT}"
    assert refused.stderr.count(warning) == 1
    assert "CRITICAL" not in refused.stderr
    # The same crawl with loopback allowed, and with the guard off: fetched.
    allowed = crawl(workflow, *resolver_only, "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=127.0.0.0/8")
    assert allowed.fields("page") == [{"name": "Aero 13 Laptop"}]
    unguarded = crawl(workflow, "-s", "TWISTED_DNS_RESOLVER=wfcrawl.middlewares.ssrf.GuardedResolver")
    assert unguarded.fields("page") == [{"name": "Aero 13 Laptop"}]
