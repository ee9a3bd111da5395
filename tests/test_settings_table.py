"""The settings table: defaults, typed and bounded reads, the config objects built from it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler

from tests.conftest import ROOT
from wfcrawl.addon import ENVIRONMENT_SETTINGS
from wfcrawl.cli import main
from wfcrawl.distributed.config import BloomSize, RedisCrawlConfig
from wfcrawl.exceptions import ConfigurationError
from wfcrawl.launcher.config import LauncherConfig, launcher_settings, parse_overrides
from wfcrawl.launcher.pubsub_setup import PubSubLayout
from wfcrawl.observability.metrics import MetricsConfig
from wfcrawl.observability.progress import CrawlProgress
from wfcrawl.pipelines.postgres import PostgresPipeline
from wfcrawl.render.setup import RenderConfig
from wfcrawl.settings.defaults import DEFAULTS
from wfcrawl.settings.table import _default_text, read, table
from wfcrawl.storage.config import PostgresConfig
from wfcrawl.web.push import PushConfig
from wfcrawl.web.pushauth import OIDCVerifier, push_verifier


def settings(**values: Any) -> Settings:
    return Settings({**DEFAULTS, **values})


def test_defaults_come_from_the_table_and_satisfy_its_bounds() -> None:
    specs = table()
    assert len(specs) == 144
    assert DEFAULTS == {name: spec.default for name, spec in specs.items()}
    # Read back through the table, every default is itself (lists and all).
    assert {name: read(settings(), name) for name in specs} == DEFAULTS
    assert sorted(ENVIRONMENT_SETTINGS) == [
        "DATABASE_URL", "GCS_BUCKET", "REDIS_URL", "WFCRAWL_API_KEYS", "WFCRAWL_METRICS_PORT",
        "WFCRAWL_METRICS_PUSHGATEWAY", "WFCRAWL_PUSH_SECRET", "WFCRAWL_WEBHOOKS_SECRET", "WFCRAWL_WEB_SECRET_KEY",
    ]


def test_every_number_is_bounded_below_and_documented_defaults_are_the_defaults() -> None:
    unbounded = [s.name for s in table().values()
                 if s.type in ("int", "float") and s.minimum is None and s.exclusive_minimum is None]
    assert unbounded == []
    for spec in table().values():
        if spec.default_doc is not None:  # an annotation after the real default, never another value
            assert spec.default_doc.startswith(_default_text(dataclasses.replace(spec, default_doc=None))), spec.name


@pytest.mark.parametrize(("name", "value", "message"), [
    ("WFCRAWL_RENDER_TIMEOUT", -1, "WFCRAWL_RENDER_TIMEOUT must be greater than 0, not -1"),
    ("WFCRAWL_STORAGE_CLOSE_TIMEOUT", "0", "WFCRAWL_STORAGE_CLOSE_TIMEOUT must be greater than 0, not '0'"),
    ("WFCRAWL_POSTGRES_BATCH_SIZE", "abc",
     "WFCRAWL_POSTGRES_BATCH_SIZE: expected int, got 'abc' (invalid literal for int() with base 10: 'abc')"),
    ("WFCRAWL_WEBHOOKS_TIMEOUT", "nan", "WFCRAWL_WEBHOOKS_TIMEOUT must be a finite number, not 'nan'"),
    ("WFCRAWL_REDIS_BLOOM_ERROR_RATE", 1, "WFCRAWL_REDIS_BLOOM_ERROR_RATE must be less than 1, not 1"),
    ("WFCRAWL_LAUNCHER_MAX_DOCUMENT_BYTES", 2_000_000,
     "WFCRAWL_LAUNCHER_MAX_DOCUMENT_BYTES must be at most 1000000, not 2000000"),
    ("WFCRAWL_PUSH_MODE", "later", "WFCRAWL_PUSH_MODE must be one of wait, accept, not 'later'"),
    ("WFCRAWL_POSTGRES_SCHEMA", "", "WFCRAWL_POSTGRES_SCHEMA must not be empty"),
    ("WFCRAWL_METRICS_LATENCY_BUCKETS", "0.1,abc",
     "WFCRAWL_METRICS_LATENCY_BUCKETS: expected list, got '0.1,abc' (could not convert string to float: 'abc')"),
    ("WFCRAWL_METRICS_LATENCY_BUCKETS", "[0.1, NaN]",
     "WFCRAWL_METRICS_LATENCY_BUCKETS: expected list, got '[0.1, NaN]' (items must be finite numbers)"),
    ("WFCRAWL_LAUNCHER_CRAWL_ARGS", '["-s", ',
     "WFCRAWL_LAUNCHER_CRAWL_ARGS: invalid JSON array: Expecting value: line 1 column 8 (char 7)"),
])
def test_bad_values_are_configuration_errors_naming_the_setting(name: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        read(settings(**{name: value}), name)
    assert str(caught.value) == message


def test_a_bad_boolean_names_the_setting() -> None:
    with pytest.raises(ConfigurationError) as caught:
        read(settings(WFCRAWL_FAST_PROFILE="maybe"), "WFCRAWL_FAST_PROFILE")
    # The rest is Scrapy's own explanation of the values getbool accepts.
    assert str(caught.value).startswith("WFCRAWL_FAST_PROFILE: expected bool, got 'maybe' (")


def test_bad_values_stop_components_at_start() -> None:
    crawler = get_crawler(settings_dict={**DEFAULTS, "WFCRAWL_PROGRESS_STALL_AFTER": "-1"})
    with pytest.raises(ConfigurationError, match=r"^WFCRAWL_PROGRESS_STALL_AFTER must be at least 0, not '-1'$"):
        CrawlProgress.from_crawler(crawler)
    crawler = get_crawler(settings_dict={**DEFAULTS, "DATABASE_URL": "postgresql://x/y",
                                         "WFCRAWL_STORAGE_RETRY_DELAY": -0.5})
    with pytest.raises(ConfigurationError, match=r"^WFCRAWL_STORAGE_RETRY_DELAY must be greater than 0, not -0.5$"):
        PostgresPipeline.from_crawler(crawler)
    with pytest.raises(ConfigurationError, match=r"^WFCRAWL_REDIS_LEASE_TTL must be at least 1, not '0.5'$"):
        RedisCrawlConfig.from_settings(settings(WFCRAWL_REDIS_LEASE_TTL="0.5"))
    with pytest.raises(ConfigurationError, match=r"^WFCRAWL_LAUNCHER_MAX_CRAWLS must be at least 1, not 0$"):
        LauncherConfig.from_settings(settings(WFCRAWL_LAUNCHER_MAX_CRAWLS=0))


def test_a_crawl_with_a_bad_value_refuses_to_start() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wfcrawl.cli", "run", "workflows/shop.yaml", "--base-url", "http://127.0.0.1:9/",
         "-s", "WFCRAWL_PROGRESS_INTERVAL=abc"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "wfcrawl.exceptions.ConfigurationError: WFCRAWL_PROGRESS_INTERVAL: expected float, got 'abc' "
        "(could not convert string to float: 'abc')"
    )
    assert "Spider opened" not in proc.stderr


def test_list_settings_take_comma_separated_values_or_a_json_array() -> None:
    """Issue 14: WFCRAWL_PUSH_SUBSCRIPTIONS / _ISSUERS were documented as JSON lists, read comma-separated."""

    subscriptions = frozenset({"projects/p/subscriptions/a", "projects/p/subscriptions/b"})
    issuers = frozenset({"accounts.google.com", "https://accounts.google.com"})
    for subs, iss in (
        ("projects/p/subscriptions/a,projects/p/subscriptions/b", "accounts.google.com,https://accounts.google.com"),
        ('["projects/p/subscriptions/a", "projects/p/subscriptions/b"]',
         '["accounts.google.com", "https://accounts.google.com"]'),
        (["projects/p/subscriptions/a", "projects/p/subscriptions/b"], ["accounts.google.com", "https://accounts.google.com"]),
    ):
        values = launcher_settings({"WFCRAWL_PUSH_SUBSCRIPTIONS": subs, "WFCRAWL_PUSH_ISSUERS": iss,
                                    "WFCRAWL_PUSH_AUDIENCE": "https://worker.example/pubsub/push"})
        assert PushConfig.from_settings(values).subscriptions == subscriptions
        verifier = push_verifier(values)
        assert isinstance(verifier, OIDCVerifier)
        assert verifier.issuers == issuers
    # A JSON array keeps commas inside items; other lists come from the environment too.
    args = '["-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=10.0.0.0/8,192.168.0.0/16"]'
    assert read(settings(WFCRAWL_LAUNCHER_CRAWL_ARGS=args), "WFCRAWL_LAUNCHER_CRAWL_ARGS") == [
        "-s", "WFCRAWL_SSRF_ALLOWED_NETWORKS=10.0.0.0/8,192.168.0.0/16"]
    assert read(settings(WFCRAWL_METRICS_LATENCY_BUCKETS="0.5, 2"), "WFCRAWL_METRICS_LATENCY_BUCKETS") == [0.5, 2.0]
    assert read(settings(WFCRAWL_WEBHOOKS_URLS=""), "WFCRAWL_WEBHOOKS_URLS") == []


def test_api_keys_from_the_environment_as_a_json_array(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFCRAWL_API_KEYS", '["alice:' + "a" * 64 + '", "bob:' + "b" * 64 + ':read"]')
    assert read(launcher_settings(), "WFCRAWL_API_KEYS") == ["alice:" + "a" * 64, "bob:" + "b" * 64 + ":read"]


def test_config_objects_read_through_the_table() -> None:
    launcher = LauncherConfig.from_settings(settings(WFCRAWL_LAUNCHER_ALLOWED_ENV="A,B",
                                                     WFCRAWL_SSRF_ALLOWED_NETWORKS='["10.20.0.0/16"]'))
    assert launcher.workdir == Path(tempfile.gettempdir()) / "wfcrawl-launcher"
    assert (launcher.allowed_env, launcher.allowed_networks, launcher.crawl_args) == (
        frozenset({"A", "B"}), ("10.20.0.0/16",), ())
    assert [str(n) for n in launcher.policy.allowed_networks] == ["10.20.0.0/16"]
    redis = RedisCrawlConfig.from_settings(settings(WFCRAWL_REDIS_DUPEFILTER="bloom", CONCURRENT_REQUESTS=0,
                                                    SCHEDULER_MEMORY_QUEUE="scrapy.squeues.FifoMemoryQueue"))
    assert (redis.bloom, redis.concurrency, redis.lifo) == (BloomSize(143_775_876, 10), 1, False)
    assert RedisCrawlConfig.from_settings(settings()).bloom is None
    metrics = MetricsConfig.from_settings(settings(WFCRAWL_METRICS_PORT="9410-9419"))
    assert (metrics.ports, metrics.latency_buckets[:2]) == ([9410, 9419], (0.05, 0.1))
    assert MetricsConfig.from_settings(settings(WFCRAWL_METRICS_PORT="")).ports is None
    assert RenderConfig.from_settings(settings()).enabled is False
    assert RenderConfig.from_settings(settings(WFCRAWL_RENDER_ENABLED="true")).enabled is True


def test_cross_field_rules_stay_in_the_configs() -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostgresConfig.from_settings(settings(DATABASE_URL="postgresql://x/y", WFCRAWL_POSTGRES_BATCH_SIZE=10,
                                              WFCRAWL_POSTGRES_MAX_PENDING=5))
    assert str(caught.value) == "WFCRAWL_POSTGRES_MAX_PENDING (5) must be at least WFCRAWL_POSTGRES_BATCH_SIZE (10)"
    with pytest.raises(ConfigurationError) as caught:
        PubSubLayout.from_settings(settings(WFCRAWL_PUBSUB_MIN_BACKOFF=300, WFCRAWL_PUBSUB_MAX_BACKOFF=60),
                                   project="p", topic="t", subscription="s")
    assert str(caught.value) == "WFCRAWL_PUBSUB_MIN_BACKOFF (300) must be at most WFCRAWL_PUBSUB_MAX_BACKOFF (60)"
    layout = PubSubLayout.from_settings(settings(WFCRAWL_PUBSUB_PROJECT="p"), topic="crawls", subscription="s",
                                        push_endpoint="https://w.example/pubsub/push")
    assert (layout.topic, layout.subscription, layout.dead_letter_topic, layout.dead_letter_subscription,
            layout.push_audience) == (
        "projects/p/topics/crawls", "projects/p/subscriptions/s", "projects/p/topics/crawls-dead-letter",
        "projects/p/subscriptions/crawls-dead-letter", "https://w.example/pubsub/push")


def test_setting_overrides_are_parsed_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_overrides(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ConfigurationError) as caught:
        parse_overrides(["A=1", "oops"])
    assert str(caught.value) == "-s takes NAME=VALUE, not 'oops'"
    for command in (["scheduler", "--once"], ["pubsub", "setup", "--topic", "t", "--subscription", "s"]):
        assert main([*command, "-s", "oops"]) == 2
        name = "pubsub" if command[0] == "pubsub" else command[0]
        assert capsys.readouterr().err == f"wfcrawl {name}: -s takes NAME=VALUE, not 'oops'\n"


def test_environment_settings_beat_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFCRAWL_METRICS_PORT", "9410")
    monkeypatch.setenv("WFCRAWL_RENDER_TIMEOUT", "5")  # not an environment setting: ignored
    values = launcher_settings()
    assert (read(values, "WFCRAWL_METRICS_PORT"), read(values, "WFCRAWL_RENDER_TIMEOUT")) == ("9410", 30.0)
