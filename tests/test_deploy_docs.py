"""The Cloud Run contract as far as it can be checked offline: the commands of
docs/deploy.md agree with each other and with wfcrawl (push audience, subscription,
concurrency, time limits, settings that exist, the image's entrypoint kept)."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from wfcrawl.launcher.config import launcher_settings
from wfcrawl.launcher.pubsub_setup import PubSubLayout
from wfcrawl.settings.defaults import DEFAULTS

DEPLOY = (ROOT / "docs" / "deploy.md").read_text()
#: The shell blocks, with continuation lines joined (a backslash-newline is removed, as sh does).
SHELL = "\n".join(block.replace("\\\n", "") for block in re.findall(r"```sh\n(.*?)```", DEPLOY, re.S))


def command(prefix: str) -> str:
    found = [line for line in SHELL.splitlines() if line.strip().startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def settings_of(line: str) -> dict[str, str]:
    return dict(m.split("=", 1) for m in re.findall(r"-s,(WFCRAWL_[A-Z_]+=[^,\s]+)", line))


def option(line: str, name: str) -> str:
    match = re.search(rf"{name}[ =](\S+)", line)
    assert match, (name, line)
    return match.group(1)


def test_every_setting_named_in_the_deploy_guide_exists() -> None:
    named = set(re.findall(r"\b(WFCRAWL_[A-Z_]+)=", DEPLOY))
    # Host-port variables of docker/compose.yaml are Compose variables, not settings.
    named -= {"WFCRAWL_API_KEYS", "WFCRAWL_API_PORT", "WFCRAWL_PGBOUNCER_PORT", "WFCRAWL_GCS_PORT",
              "WFCRAWL_PUBSUB_PORT"}
    assert named and sorted(named - set(DEFAULTS)) == []


def test_the_push_subscription_and_the_worker_agree() -> None:
    worker = settings_of(command("gcloud run services update wfcrawl-worker"))
    setup = command("docker run --rm -v ~/.config/gcloud")
    assert "--push-audience" not in setup  # the audience is the endpoint: what the worker checks
    layout = PubSubLayout.from_settings(
        launcher_settings({"WFCRAWL_PUBSUB_ACK_DEADLINE": int(option(setup, "WFCRAWL_PUBSUB_ACK_DEADLINE"))}),
        project="$PROJECT", topic=option(setup, "--topic"), subscription=option(setup, "--subscription"),
        push_endpoint=option(setup, "--push-endpoint").replace("$WORKER_URL", "https://$WORKER_URL"),
        push_service_account=option(setup, "--push-service-account"),
    )
    assert (layout.push_audience.replace("https://", ""), layout.push_service_account, layout.subscription) == (
        worker["WFCRAWL_PUSH_AUDIENCE"], worker["WFCRAWL_PUSH_SERVICE_ACCOUNT"], worker["WFCRAWL_PUSH_SUBSCRIPTIONS"])
    assert worker["WFCRAWL_PUSH_ENABLED"] == "True"

    # One crawl per push request: Cloud Run's concurrency is the launcher's crawl limit;
    # each time limit is inside the next one.
    deploy = command("gcloud run deploy wfcrawl-worker")
    assert option(deploy, "--concurrency") == worker["WFCRAWL_LAUNCHER_MAX_CRAWLS"] == "2"
    times = [float(worker["WFCRAWL_LAUNCHER_CRAWL_TIMEOUT"]), float(worker["WFCRAWL_PUSH_WAIT_TIMEOUT"]),
             float(layout.ack_deadline), float(option(deploy, "--timeout"))]
    assert times == sorted(set(times)) == [580, 590, 600, 900]


def test_services_keep_the_entrypoint_and_stop_within_cloud_runs_10_seconds() -> None:
    for name in ("wfcrawl-launcher", "wfcrawl-worker"):
        for line in [command(f"gcloud run deploy {name}"),
                     *([command("gcloud run services update wfcrawl-worker")] if name == "wfcrawl-worker" else [])]:
            assert "--command" not in line, line  # would replace tini
            assert option(line, "--args").startswith("wfcrawl,serve,"), line
            kill = settings_of(line).get("WFCRAWL_LAUNCHER_KILL_TIMEOUT")
            assert kill is None or float(kill) < 10, line
