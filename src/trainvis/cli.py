"""The ``trainvis`` command: ``serve`` and friends.

``serve`` has one flag per :class:`~trainvis.config.Settings` field, built from
the field (type, choices, help); each also reads its ``TRAINVIS_*`` environment
variable (flags win).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo

from trainvis.config import Settings

log = logging.getLogger("trainvis")
Command = Callable[[argparse.Namespace], int]
#: What ``trainvis serve`` needs beyond the SDK: the ``server`` extra's top-level modules.
SERVER_MODULES = ("fastapi", "starlette", "uvicorn", "httptools", "tsdownsample")
SERVER_HINT = "pip install 'trainvis[server]'"


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the API and dashboard server")
    for name, field in Settings.model_fields.items():
        _add_setting_flag(serve, name, field)
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)


def _add_setting_flag(parser: argparse.ArgumentParser, name: str, field: FieldInfo) -> None:
    """One flag for one :class:`Settings` field: type, choices and help from the field."""
    flag = "--" + name.replace("_", "-")
    shown = "" if field.default in (None, ()) else f", default {field.default}"
    help_text = f"{field.description} [TRAINVIS_{name.upper()}{shown}]".replace("%", "%%")
    annotation = field.annotation
    if annotation is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        return
    choices = get_args(annotation) if get_origin(annotation) is Literal else None
    kind: Callable[[str], Any] = str.lower if choices else str
    if annotation in (int, float):
        kind = annotation  # type: ignore[assignment]
    parser.add_argument(flag, type=kind, choices=choices, help=help_text)


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
            **{name: getattr(args, name) for name in Settings.model_fields}
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
