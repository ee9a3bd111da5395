"""``wfcrawl serve | listen | pubsub setup | api-key | cancel``: the launcher services' commands.

Not a Scrapy command module (Scrapy imports every module of COMMANDS_MODULE
and finds no ScrapyCommand here): :func:`add_commands` adds argparse
subcommands to the ``wfcrawl`` console command; each sets ``args.handler``.
The web package (the ``serve`` extra: FastAPI) is imported only by the handlers
that use it, so every other command works without that extra.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from typing import Any

from wfcrawl.exceptions import ConfigurationError, WfcrawlError
from wfcrawl.launcher.config import (
    LauncherConfig,
    launcher_settings,
    open_registry,
    open_store,
    parse_overrides,
)
from wfcrawl.launcher.launch import Launcher
from wfcrawl.launcher.pubsub_setup import PubSubLayout, iam_commands, setup
from wfcrawl.launcher.pull import Listener
from wfcrawl.launcher.record import cancel_execution
from wfcrawl.settings.table import read


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
    return Launcher(LauncherConfig.from_settings(settings), open_store(settings), open_registry(settings))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _one_time_key(host: str, push_on: bool) -> str | None:
    """Without API keys: a key for this run only on loopback (as Jupyter does), none for a
    push-only service; anywhere else ``wfcrawl serve`` refuses to start."""
    from wfcrawl.web.auth import generate_api_key  # the web package: the serve extra

    if not _is_loopback(host) and not push_on:
        raise SystemExit(
            f"wfcrawl serve: refusing to listen on {host} without API keys: anyone who can reach it could "
            "start crawls. Set WFCRAWL_API_KEYS (make keys with `wfcrawl api-key NAME`), or listen on "
            "127.0.0.1 (the default without keys)"
        )
    return generate_api_key() if _is_loopback(host) else None


def serve(args: argparse.Namespace) -> int:
    # The web package is the serve extra (FastAPI): imported only by the commands that need it.
    from wfcrawl.web.app import asgi, create_app
    from wfcrawl.web.auth import ApiKey, ApiKeyAuth, key_digest, parse_api_keys
    from wfcrawl.web.config import WebConfig
    from wfcrawl.web.server import WebServer
    from wfcrawl.web.services import Services

    settings = launcher_settings(parse_overrides(args.set))
    _configure_logging(settings)
    keys = parse_api_keys(read(settings, "WFCRAWL_API_KEYS"))
    push_on = read(settings, "WFCRAWL_PUSH_ENABLED")
    # Configured (a deployment): every interface, as containers need. Else this machine only.
    host = args.host or ("0.0.0.0" if keys or push_on else "127.0.0.1")
    one_time_key = None if keys else _one_time_key(host, push_on)
    if one_time_key is not None:
        keys = [ApiKey("admin", bytes.fromhex(key_digest(one_time_key)))]
    config = WebConfig.from_settings(settings)
    launcher = _launcher(settings)
    push = None
    if push_on:
        from wfcrawl.web.push import PushConfig, PushEndpoint
        from wfcrawl.web.pushauth import push_verifier

        push = PushEndpoint(launcher, push_verifier(settings), PushConfig.from_settings(settings))
    redis_client = None
    if read(settings, "REDIS_URL"):  # the fleet page reads the distributed crawls' state
        from wfcrawl.distributed.connection import shared_client

        redis_client = shared_client(read(settings, "REDIS_URL"), socket_timeout=5)
    app = create_app(Services(launcher, launcher.registry, ApiKeyAuth(keys), config, push=push,
                              token_login=one_time_key is not None, redis=redis_client,
                              redis_prefix=read(settings, "WFCRAWL_REDIS_KEY_PREFIX")))
    budget = config.shutdown_timeout

    def stop_crawls() -> None:
        logging.getLogger(__name__).info("Stopping: crawls are stopped and recorded as failed")
        # SIGKILL what has not stopped with time left to record it, within the budget.
        launcher.shutdown(timeout=max(1.0, budget - 1), kill_timeout=max(0.5, budget - 2))

    server = WebServer(asgi(app, config.root_path), config, host, args.port, on_stop=stop_crawls)
    # Tests and scripts read this line to find the port (--port 0).
    print(f"wfcrawl launcher listening on {server.url}", flush=True)
    if one_time_key is not None:
        root = server.url + config.root_path
        print("No API keys are configured (WFCRAWL_API_KEYS): this run has a one-time admin key,\n"
              f"    {one_time_key}\n"
              "To sign in to the dashboard, open this URL in a browser on this machine:\n"
              f"    {root}/login?token={one_time_key}", flush=True)
    # uvicorn handles SIGTERM/SIGINT while it serves and raises them again afterwards:
    # let that be a no-op, so that a graceful stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run()
    return 0


def listen(args: argparse.Namespace) -> int:
    settings = launcher_settings(parse_overrides(args.set))
    _configure_logging(settings)
    listener = Listener(
        _launcher(settings), args.subscription, max_messages=read(settings, "WFCRAWL_PUBSUB_MAX_MESSAGES"),
        max_lease_duration=read(settings, "WFCRAWL_PUBSUB_MAX_LEASE_DURATION"),
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
    settings = launcher_settings(parse_overrides(args.set))
    given = {"project": args.project} if args.project else {}  # else WFCRAWL_PUBSUB_PROJECT
    layout = PubSubLayout.from_settings(
        settings, topic=args.topic, subscription=args.subscription,
        push_endpoint=args.push_endpoint or "", push_service_account=args.push_service_account or "",
        push_audience=args.push_audience or "", **given,
    )
    for line in setup(layout):
        print(line)
    print("Dead-lettering needs these grants (once per project):")
    for line in iam_commands(layout):
        print("  " + line)
    return 0


def api_key(args: argparse.Namespace) -> int:
    from wfcrawl.web.auth import generate_api_key, key_digest  # the web package: the serve extra

    key = generate_api_key()
    entry = f"{args.name}:{key_digest(key)}" + (":read" if args.read_only else "")
    print(f"API key (give it to the client; it is not stored): {key}")
    print(f"WFCRAWL_API_KEYS entry (store this):                  {entry}")
    return 0


def cancel(args: argparse.Namespace) -> int:
    """An operator's cancel: the execution ends ``cancelled``, and every crawl process of it
    (a launched crawl, each instance of a fleet) closes at its next stats update."""
    settings = launcher_settings(parse_overrides(args.set))
    if not read(settings, "DATABASE_URL") and not read(settings, "WFCRAWL_SQLITE_PATH"):
        raise ConfigurationError("cancel needs the executions record: DATABASE_URL or WFCRAWL_SQLITE_PATH "
                                 "(environment or -s)")
    store = open_store(settings)  # PostgreSQL, else the SQLite file `wfcrawl serve` keeps
    execution = cancel_execution(store, args.execution_id)
    if execution is None:
        print(f"wfcrawl cancel: no execution {args.execution_id!r}", file=sys.stderr)
        return 1
    if execution.status != "cancelled":
        print(f"wfcrawl cancel: execution {execution.id} already ended: {execution.status}", file=sys.stderr)
        return 1
    print(f"execution {execution.id} cancelled: its crawl processes stop at their next stats update")
    return 0


def add_commands(sub: Any) -> None:
    """Add the launcher subcommands to the ``wfcrawl`` parser's subparsers."""
    p = sub.add_parser("serve", help="HTTP API, Pub/Sub push endpoint and dashboard (Cloud Run service)")
    p.add_argument("--host", help="default: 0.0.0.0 with API keys or push configured, else 127.0.0.1 "
                                  "(with a one-time admin key printed on the console)")
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

    p = sub.add_parser("cancel", help="cancel an execution (every crawl process of it stops)",
                       description="An operator's cancel: the execution ends cancelled, and each of its crawl "
                       "processes closes at its next stats update (WFCRAWL_EXECUTIONS_INTERVAL); a launcher stops "
                       "the crawls it started. In the executions record of DATABASE_URL, else WFCRAWL_SQLITE_PATH.")
    p.add_argument("execution_id")
    _settings_option(p)
    p.set_defaults(handler=cancel)

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
