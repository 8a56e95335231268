"""The ``trainvis`` command: ``serve`` and friends.

Flags map one-to-one onto :class:`~trainvis.config.Settings` fields; each also
reads its ``TRAINVIS_*`` environment variable (flags win).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from trainvis.config import SETTINGS, Settings

log = logging.getLogger("trainvis")
Command = Callable[[argparse.Namespace], int]
#: What ``trainvis serve`` needs beyond the SDK: the ``server`` extra's top-level modules.
SERVER_MODULES = ("fastapi", "starlette", "uvicorn", "httptools", "tsdownsample")
SERVER_HINT = "pip install 'trainvis[server]'"


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the API and dashboard server")
    helps = {item.name: item.help for item in SETTINGS}
    serve.add_argument("--db", help=f"{helps['db']} [TRAINVIS_DB, default ./trainvis.db]")
    serve.add_argument("--host", help=f"{helps['host']} [TRAINVIS_HOST, default 127.0.0.1]")
    serve.add_argument("--port", type=int, help=f"{helps['port']} [TRAINVIS_PORT, default 8000]")
    serve.add_argument("--api-token", help=f"{helps['api_token']} [TRAINVIS_API_TOKEN]")
    serve.add_argument("--read-token", help=f"{helps['read_token']} [TRAINVIS_READ_TOKEN]")
    serve.add_argument("--cors-origins", help=f"{helps['cors_origins']} [TRAINVIS_CORS_ORIGINS]")
    serve.add_argument(
        "--sse-heartbeat", type=float, help=f"{helps['sse_heartbeat']} [TRAINVIS_SSE_HEARTBEAT]"
    )
    serve.add_argument("--max-rows", type=int, help=f"{helps['max_rows']} [TRAINVIS_MAX_ROWS]")
    serve.add_argument(
        "--max-body-bytes", type=int, help=f"{helps['max_body_bytes']} [TRAINVIS_MAX_BODY_BYTES]"
    )
    serve.add_argument("--log-level", help=f"{helps['log_level']} [TRAINVIS_LOG_LEVEL]")
    serve.add_argument("--webhook-url", help=f"{helps['webhook_url']} [TRAINVIS_WEBHOOK_URL]")
    serve.add_argument(
        "--webhook-format",
        choices=("json", "slack"),
        help=f"{helps['webhook_format']} [TRAINVIS_WEBHOOK_FORMAT, default json]",
    )
    serve.add_argument(
        "--webhook-min-severity",
        choices=("info", "warning", "critical"),
        help=f"{helps['webhook_min_severity']} [TRAINVIS_WEBHOOK_MIN_SEVERITY, default warning]",
    )
    serve.add_argument(
        "--no-health",
        dest="health",
        action="store_false",
        default=None,
        help="do not run the training-health detectors on ingest [TRAINVIS_HEALTH=0]",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback --host without a write token [TRAINVIS_INSECURE]",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)


def missing_server_module() -> str | None:
    """The first module of the ``server`` extra that cannot be imported, or None.

    ``pip install trainvis`` is the SDK only; the server needs the extra.
    """
    for name in SERVER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def _serve(args: argparse.Namespace) -> int:
    missing = missing_server_module()
    if missing:
        print(
            f"trainvis serve: the server is not installed ({missing} is missing); "
            f"install it with: {SERVER_HINT}",
            file=sys.stderr,
        )
        return 2
    from trainvis.api.app import API_PREFIX, create_app
    from trainvis.server import insecure_reason, run

    try:
        settings = Settings.from_env(
            db=args.db,
            host=args.host,
            port=args.port,
            api_token=args.api_token,
            read_token=args.read_token,
            cors_origins=args.cors_origins,
            sse_heartbeat=args.sse_heartbeat,
            max_rows=args.max_rows,
            max_body_bytes=args.max_body_bytes,
            log_level=args.log_level,
            insecure=args.insecure,
            webhook_url=args.webhook_url,
            webhook_format=args.webhook_format,
            webhook_min_severity=args.webhook_min_severity,
            health=args.health,
        )
    except ValueError as exc:
        print(f"trainvis serve: {exc}", file=sys.stderr)
        return 2
    refusal = insecure_reason(settings)
    if refusal:
        print(f"trainvis serve: {refusal}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s: %(message)s")
    app = create_app(settings)
    base = f"http://{_display_host(settings.host)}:{settings.port}"
    log.info(
        "trainvis serving %s — dashboard %s%s/dashboard, API docs %s/docs",
        _display_db(settings.db),
        base,
        API_PREFIX,
        base,
    )
    run(app, settings, access_log=args.access_log)
    return 0


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "localhost"
    return f"[{host}]" if ":" in host else host


def _display_db(db: str) -> str:
    if "://" in db and "@" in db:  # hide credentials of a database URL
        scheme, rest = db.split("://", 1)
        return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
    return db


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainvis", description="Training visualization server")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
]:
    """Sub-commands that live beside the code they drive."""
    from trainvis.client.commands import register as register_client
    from trainvis.demo import register as register_demo
    from trainvis.transfer_cli import register as register_transfer

    return [register_demo, register_client, register_transfer]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
