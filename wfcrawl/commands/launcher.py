"""``wfcrawl serve | listen | pubsub setup | api-key``: the launcher services' commands.

Not a Scrapy command module (Scrapy imports every module of COMMANDS_MODULE
and finds no ScrapyCommand here): :func:`add_commands` adds argparse
subcommands to the ``wfcrawl`` console command; each sets ``args.handler``.
Imports are done inside the handlers, so ``wfcrawl validate`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from wfcrawl.exceptions import WfcrawlError


def _overrides(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"wfcrawl: -s expects NAME=VALUE, got {value!r}")
        out[name] = setting
    return out


def _settings_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE",
                        help="set a setting (repeatable), e.g. -s WFCRAWL_LAUNCHER_MAX_CRAWLS=4")


def _configure_logging(settings: Any) -> None:
    logging.basicConfig(
        level=settings.get("LOG_LEVEL") or "INFO", stream=sys.stderr,
        format="%(asctime)s [%(name)s] %(levelname)s: %(message)s",
    )


def _until_signal() -> None:
    """Block until SIGTERM (Cloud Run's stop) or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _launcher(settings: Any) -> Any:
    from wfcrawl.launcher.config import LauncherConfig, open_registry, open_store
    from wfcrawl.launcher.launch import Launcher

    return Launcher(LauncherConfig.from_settings(settings), open_store(settings), open_registry(settings))


def serve(args: argparse.Namespace) -> int:
    from wfcrawl.launcher.api import ApiApp
    from wfcrawl.launcher.auth import ApiKeyAuth, parse_api_keys
    from wfcrawl.launcher.config import getlist_json, launcher_settings
    from wfcrawl.launcher.http import HttpService
    from wfcrawl.launcher.push import PushConfig, PushEndpoint, push_verifier
    from wfcrawl.launcher.ratelimit import RateLimiter

    settings = launcher_settings(_overrides(args.set))
    _configure_logging(settings)
    keys = parse_api_keys(getlist_json(settings, "WFCRAWL_API_KEYS"))
    push_on = settings.getbool("WFCRAWL_PUSH_ENABLED")
    if not keys and not push_on:
        raise SystemExit("wfcrawl serve: set WFCRAWL_API_KEYS (see `wfcrawl api-key`) or WFCRAWL_PUSH_ENABLED")
    launcher = _launcher(settings)
    push = PushEndpoint(launcher, push_verifier(settings), PushConfig.from_settings(settings)) if push_on else None
    app = ApiApp(launcher, launcher.registry, ApiKeyAuth(keys),
                 RateLimiter(settings.getfloat("WFCRAWL_API_RATE_LIMIT"), settings.getint("WFCRAWL_API_RATE_BURST")),
                 push)
    service = HttpService(app, args.host, args.port, max_body=settings.getint("WFCRAWL_API_MAX_BODY_BYTES")).start()
    # Tests and scripts read this line to find the port (--port 0).
    print(f"wfcrawl launcher listening on {service.url}", flush=True)
    _until_signal()
    logging.getLogger(__name__).info("Stopping: crawls are stopped and recorded as failed")
    launcher.shutdown()
    service.stop()
    return 0


def listen(args: argparse.Namespace) -> int:
    from wfcrawl.launcher.config import launcher_settings
    from wfcrawl.launcher.pull import Listener

    settings = launcher_settings(_overrides(args.set))
    _configure_logging(settings)
    listener = Listener(
        _launcher(settings), args.subscription, max_messages=settings.getint("WFCRAWL_PUBSUB_MAX_MESSAGES"),
        max_lease_duration=settings.getfloat("WFCRAWL_PUBSUB_MAX_LEASE_DURATION"),
    ).start()
    print(f"wfcrawl listening on {args.subscription}", flush=True)
    errors: list[BaseException] = []

    def watch() -> None:  # a broken stream (subscription deleted, no permission) ends the process
        try:
            listener.wait()
        except Exception as exc:
            errors.append(exc)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
    _until_signal()
    listener.stop()
    if errors:
        print(f"wfcrawl listen: the subscription stream failed: {errors[0]}", file=sys.stderr)
        return 1
    return 0


def pubsub_setup(args: argparse.Namespace) -> int:
    from wfcrawl.launcher.config import launcher_settings
    from wfcrawl.launcher.pubsub_setup import PubSubLayout, iam_commands, setup

    settings = launcher_settings(_overrides(args.set))
    layout = PubSubLayout.from_settings(
        settings, project=args.project or "", topic=args.topic, subscription=args.subscription,
        push_endpoint=args.push_endpoint or "", push_service_account=args.push_service_account or "",
        push_audience=args.push_audience or "",
    )
    for line in setup(layout):
        print(line)
    print("Dead-lettering needs these grants (once per project):")
    for line in iam_commands(layout):
        print("  " + line)
    return 0


def api_key(args: argparse.Namespace) -> int:
    from wfcrawl.launcher.auth import generate_api_key, key_digest

    key = generate_api_key()
    entry = f"{args.name}:{key_digest(key)}" + (":read" if args.read_only else "")
    print(f"API key (give it to the client; it is not stored): {key}")
    print(f"WFCRAWL_API_KEYS entry (store this):                  {entry}")
    return 0


def add_commands(sub: Any) -> None:
    """Add the launcher subcommands to the ``wfcrawl`` parser's subparsers."""
    p = sub.add_parser("serve", help="HTTP API and Pub/Sub push endpoint (Cloud Run service)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")),
                   help="default: $PORT (Cloud Run sets it) or 8080; 0: any free port")
    _settings_option(p)
    p.set_defaults(handler=serve)

    p = sub.add_parser("listen", help="run the crawls of a Pub/Sub subscription (streaming pull)")
    p.add_argument("--subscription", required=True, help="projects/P/subscriptions/S")
    _settings_option(p)
    p.set_defaults(handler=listen)

    pubsub = sub.add_parser("pubsub", help="Pub/Sub administration")
    pubsub_sub = pubsub.add_subparsers(dest="pubsub_command", required=True)
    p = pubsub_sub.add_parser("setup", help="create/update the launch topic, subscription and dead-letter topic")
    p.add_argument("--project", help="default: WFCRAWL_PUBSUB_PROJECT (or give full paths)")
    p.add_argument("--topic", required=True)
    p.add_argument("--subscription", required=True)
    p.add_argument("--push-endpoint", help="https://.../pubsub/push: a push subscription (default: pull)")
    p.add_argument("--push-service-account", help="the service account push requests are signed as (OIDC)")
    p.add_argument("--push-audience", help="OIDC audience (default: the push endpoint)")
    _settings_option(p)
    p.set_defaults(handler=pubsub_setup)

    p = sub.add_parser("api-key", help="make an API key and its WFCRAWL_API_KEYS entry")
    p.add_argument("name")
    p.add_argument("--read-only", action="store_true", help="the key may not register, start or cancel")
    p.set_defaults(handler=api_key)


def run_command(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except WfcrawlError as exc:
        print(f"wfcrawl {args.command}: {exc}", file=sys.stderr)
        return 2
