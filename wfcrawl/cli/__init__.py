"""The ``wfcrawl`` console command.

``wfcrawl run FILE``       crawl a workflow (``scrapy crawl workflow`` with its options;
                           ``--fast``: the opt-in fast options, docs/performance.md;
                           ``--stats``: Scrapy's stats dump too); exit status: the outcome
``wfcrawl validate FILE``  check workflow documents; non-zero exit on any problem
``wfcrawl demo``           serve the bundled demo shop locally and crawl it
``wfcrawl scheduler``      launch scheduled workflows (cron), once across replicas
``wfcrawl spill load FILE`` write PostgreSQL spill files into the database
``wfcrawl cancel ID``      cancel an execution (every crawl process of it stops)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from scrapy.cmdline import execute
from scrapy.utils.conf import closest_scrapy_cfg
from scrapy.utils.project import get_project_settings

from wfcrawl import __version__
from wfcrawl.cli.scheduler import run_scheduler
from wfcrawl.cli.services import add_commands, run_command
from wfcrawl.commands.validate import validate_files
from wfcrawl.demo import run_demo
from wfcrawl.exceptions import ConfigurationError, DatabaseUnreachableError, WfcrawlError
from wfcrawl.handlers import aiohttp_handler_available
from wfcrawl.launcher.config import launcher_settings, parse_overrides
from wfcrawl.outcome import EXIT_INVALID
from wfcrawl.settings.defaults import FAST_OPTIONS
from wfcrawl.spiders.loading import plan_for_crawl
from wfcrawl.storage.config import PostgresConfig
from wfcrawl.storage.postgres.ending import is_end_file, load_end
from wfcrawl.storage.postgres.spill import load_spill, spill_retrying
from wfcrawl.workflow.render import plan_renders


def _use_wfcrawl_project() -> None:
    # Inside another Scrapy project (a scrapy.cfg up the tree), use its
    # settings; anywhere else, wfcrawl's own project settings.
    if "SCRAPY_SETTINGS_MODULE" not in os.environ and not closest_scrapy_cfg():
        os.environ["SCRAPY_SETTINGS_MODULE"] = "wfcrawl.settings"


def fast_settings(workflow: str, parse_workers: int | None = None, base_url: str | None = None) -> list[str]:
    """``-s`` arguments for ``wfcrawl run --fast`` (FAST_OPTIONS); raises
    ConfigurationError when the ``fast`` extra is not installed."""
    missing = [m for m in ("aiohttp", "uvloop") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigurationError(f"--fast needs {', '.join(missing)}: pip install 'wfcrawl[fast]'")
    options = dict(FAST_OPTIONS)
    if not aiohttp_handler_available():
        # Scrapy < 2.19 has no aiohttp handler to build on: parse workers and uvloop only.
        del options["DOWNLOAD_HANDLERS"]
    if parse_workers is None:
        parse_workers = len(os.sched_getaffinity(0)) - 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) - 1
    options["WFCRAWL_PARSE_WORKERS"] = max(parse_workers, 0)
    try:
        # As the crawl will load it (in this process: the crawl reuses this compile).
        renders = plan_renders(plan_for_crawl(get_project_settings(), {"workflow": workflow, "base_url": base_url}))
    except WfcrawlError:
        renders = False  # the crawl command reports the document's problems
    if renders:  # rendered pages go through scrapy-playwright's handler, on the loop it is tested with
        options.pop("DOWNLOAD_HANDLERS", None)
        options.pop("ASYNCIO_EVENT_LOOP")
    args: list[str] = []
    for name, value in options.items():
        args += ["-s", f"{name}={json.dumps(value) if isinstance(value, dict) else value}"]
    return args


def _run(args: argparse.Namespace, scrapy_args: list[str]) -> int:
    _use_wfcrawl_project()
    argv = ["scrapy", "crawl", "workflow", "-a", f"workflow={args.file}"]
    if args.base_url:
        argv += ["-a", f"base_url={args.base_url}"]
    if args.execution_id:
        argv += ["-a", f"execution_id={args.execution_id}"]
    if args.stats:
        argv += ["-s", "STATS_DUMP=True"]
    if args.fast:
        try:
            argv += fast_settings(args.file, args.parse_workers, args.base_url)  # before the user's -s: theirs win
        except ConfigurationError as exc:
            print(f"wfcrawl run: {exc}", file=sys.stderr)
            return EXIT_INVALID
    try:
        execute(argv + scrapy_args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _spill_load(args: argparse.Namespace) -> int:
    """``wfcrawl spill load``: the settings a crawl would have (project, environment,
    ``-s``), so the rows go where and how the crawl's pipeline writes them."""
    try:
        overrides: dict[str, str] = parse_overrides(args.settings)
        if args.database_url:
            overrides["DATABASE_URL"] = args.database_url
        if args.schema:
            overrides["WFCRAWL_POSTGRES_SCHEMA"] = args.schema
        config = PostgresConfig.from_settings(launcher_settings(overrides))
    except ConfigurationError as exc:
        print(f"wfcrawl spill load: {exc}", file=sys.stderr)
        return 2
    if not config.dsn:
        print("wfcrawl spill load: no database: --database-url, or the DATABASE_URL setting", file=sys.stderr)
        return 2
    status = 0
    for name in args.files:
        path = Path(name)
        try:
            if is_end_file(path):
                execution_id, ended = spill_retrying(
                    config, args.retry_for, "Recording an execution's end failed")(load_end, path, config)
                print(f"{path}: the end of execution {execution_id} recorded "
                      f"({ended or 'no such execution'}) -> {path.name}.loaded")
                continue
            result = load_spill(path, config, retry_for=args.retry_for)
        except DatabaseUnreachableError as exc:
            print(f"{path}: not loaded ({exc}); the file is kept", file=sys.stderr)
            status = 1
            continue
        except ConfigurationError as exc:  # the file, located; nothing of it written
            print(exc, file=sys.stderr)
            status = 2
            continue
        except Exception as exc:  # the database: the file stays, run the command again
            print(f"{path}: not loaded ({type(exc).__name__}: {str(exc).strip()}); the file is kept", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {result.rows} rows: {result.inserted} inserted, {result.updated} updated, "
              f"{result.outdated} outdated, {result.quarantined} quarantined, {result.refused} refused by the database "
              f"-> {path.name}.loaded")
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wfcrawl", description="Scrapy crawls described by workflow documents.")
    parser.add_argument("--version", action="version", version=f"wfcrawl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="crawl a workflow document",
        description="Crawl a workflow. Any further options are Scrapy's crawl options "
        "(-o/-O FILE, -s NAME=VALUE, -a NAME=VALUE, -L LEVEL, ...). Exit status: 0 succeeded, 1 failed, "
        "2 invalid document or setting, 3 degraded, 4 cancelled, 130/143 interrupted (docs/operations.md#outcomes).",
    )
    run.add_argument("file")
    run.add_argument("--base-url", help="override the document's base_url")
    run.add_argument("--execution-id", help="name this run (default: generated)")
    run.add_argument(
        "--fast", action="store_true",
        help="the opt-in fast options (docs/performance.md): parse workers on the spare cores, the aiohttp "
        "download handler (not for rendering workflows) and uvloop; needs the fast extra",
    )
    run.add_argument("--parse-workers", type=int, metavar="N",
                     help="with --fast: parse worker processes (default: usable cores - 1)")
    run.add_argument("--stats", action="store_true",
                     help="also log Scrapy's stats dump at the end (STATS_DUMP; the summary is always logged)")

    spill = sub.add_parser(
        "spill", help="load PostgreSQL spill files back into the database",
        description="Write the rows of PostgreSQL spill files (WFCRAWL_STORAGE_SPILL_DIR) with the crawl's "
        "idempotent upserts; each loaded file is renamed FILE.loaded. See docs/storage.md.",
    )
    spill.add_argument("action", choices=["load"])
    spill.add_argument("files", nargs="+", metavar="FILE",
                       help="postgres-*.jsonl spill files, executions-*.json execution ends")
    spill.add_argument("--retry-for", type=float, default=60.0, metavar="SECONDS",
                       help="retry database errors worth retrying (connection lost, server starting) with "
                       "backoff for this long per file (default: 60)")
    spill.add_argument("--database-url", help="PostgreSQL to load into (default: the DATABASE_URL setting)")
    spill.add_argument("--schema", help="schema of the crawl's tables (default: WFCRAWL_POSTGRES_SCHEMA)")
    spill.add_argument("-s", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                       help="a setting, as for crawls (project settings and the environment apply too)")

    validate = sub.add_parser("validate", help="validate workflow documents")
    validate.add_argument("files", nargs="+")

    demo = sub.add_parser("demo", help="crawl the bundled demo shop on a local port")
    demo.add_argument("--out", default="demo-items.jsonl", help="items file (JSON lines)")
    demo.add_argument("--workflow", default=None, help="workflow file (default: the bundled demo)")

    add_commands(sub)  # serve, listen, pubsub setup, api-key (docs/launching.md)

    scheduler = sub.add_parser(
        "scheduler", help="launch scheduled workflows (cron) once across replicas",
        description="Launch the due slots of workflows with a schedule: block (registered with the "
        "launcher, or FILEs). See docs/operations.md.",
    )
    scheduler.add_argument("files", nargs="*", help="workflow files to schedule besides the registered ones")
    scheduler.add_argument("-s", dest="settings", action="append", default=[], metavar="NAME=VALUE")
    scheduler.add_argument("--once", action="store_true", help="one tick, wait for its crawls, exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "run":
        return _run(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "scheduler":
        try:
            return run_scheduler(args.files, parse_overrides(args.settings), once=args.once)
        except ConfigurationError as exc:
            print(f"wfcrawl scheduler: {exc}", file=sys.stderr)
            return 2
    if args.command == "spill":
        return _spill_load(args)
    if args.command == "validate":
        return validate_files(args.files)
    if hasattr(args, "handler"):
        return run_command(args)
    return run_demo(args.out, args.workflow)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
