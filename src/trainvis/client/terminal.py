"""Terminal commands: ``trainvis ls`` (a table of runs) and ``trainvis tail JOB`` (follow one).

Both talk to a server (``--url``/``TRAINVIS_URL``, default ``http://127.0.0.1:8000``;
``--token``/``TRAINVIS_TOKEN`` where reads are protected). On a terminal they use
``rich`` (colours, a boxed table) when it is installed; piped, redirected or
without ``rich`` they print plain text: a space-aligned table, and one
``key=value`` line per row or event, flushed at once so ``| grep`` sees it live.
``rich`` stays optional: the SDK runs inside training environments that should
not need it, and the plain output is complete.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from trainvis.client.http import ApiClient, ApiError, ServerUnavailable
from trainvis.client.start import ClientSettings
from trainvis.client.stream import (
    Alert,
    Deleted,
    Disconnected,
    Item,
    JobFollower,
    Row,
    Snapshot,
    StatusChange,
)

DEFAULT_URL = "http://127.0.0.1:8000"
STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
TERMINAL = ("completed", "failed", "cancelled")
#: Loss metrics tried in turn when ``--metric`` is not given (then any ``*loss*``).
LOSS_ORDER = ("train_loss", "loss", "val_loss")
COLUMNS = ("ID", "NAME", "STATUS", "STEP", "LOSS", "BEST", "ETA")
_STATUS_STYLE = {
    "pending": "dim",
    "running": "bold green",
    "paused": "yellow",
    "completed": "blue",
    "failed": "bold red",
    "cancelled": "magenta",
}
_SEVERITY_STYLE = {"info": "cyan", "warning": "bold yellow", "critical": "bold red"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ls`` and ``tail`` to the ``trainvis`` command."""
    ls = sub.add_parser("ls", help="list runs: status, step, last and best loss, ETA")
    ls.add_argument("--status", choices=STATUSES, help="only jobs in this status")
    ls.add_argument("--tag", help="only jobs with this tag")
    ls.add_argument("-q", dest="q", metavar="TEXT", help="name or model contains TEXT")
    ls.add_argument("--limit", type=int, default=50, help="most jobs listed (default 50)")
    ls.add_argument("--offset", type=int, default=0, help="skip this many (newest first)")
    ls.add_argument("--metric", help="the loss column's metric (default: train_loss, …)")
    _add_common(ls)
    ls.set_defaults(func=_ls)

    tail = sub.add_parser("tail", help="follow a job live: metric rows, alerts, status")
    tail.add_argument("job", help="id of the job to follow")
    tail.add_argument(
        "--since", type=int, help="replay rows after this stream id first (0: the whole run)"
    )
    tail.add_argument("--metrics", help="comma list: show only these metrics")
    _add_common(tail)
    tail.set_defaults(func=_tail)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"server root [TRAINVIS_URL, default {DEFAULT_URL}]")
    parser.add_argument("--token", help="bearer token [TRAINVIS_TOKEN]")
    parser.add_argument("--plain", action="store_true", help="plain text even on a terminal")


def _server(args: argparse.Namespace) -> tuple[str, str | None]:
    settings = ClientSettings.resolve(url=args.url, token=args.token)
    return settings.url or DEFAULT_URL, settings.token


def _fail(command: str, url: str, exc: Exception) -> int:
    hint = "" if isinstance(exc, ApiError) else " (is the server up? --url / TRAINVIS_URL)"
    print(f"trainvis {command}: {url}: {exc}{hint}", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------- formatting


def number(value: Any, digits: int = 4) -> str:
    """A metric value for people: ``digits`` significant digits; ``NaN``/``inf`` kept."""
    if isinstance(value, str):  # the server's "NaN", "Infinity", "-Infinity"
        return {"Infinity": "inf", "-Infinity": "-inf"}.get(value, value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}g}"


def duration(seconds: Any) -> str:
    """``45s``, ``12m05s``, ``3h04m``, ``2d03h``; ``-`` when unknown."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        return "-"
    whole = int(round(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def loss_metric(job: dict[str, Any], chosen: str | None = None) -> str | None:
    """The metric of the loss columns: ``chosen``, else train_loss, loss, val_loss, any *loss*."""
    if chosen:
        return chosen
    known = set(job.get("metric_names") or ()) | set((job.get("summary") or {}).get("last") or ())
    for name in LOSS_ORDER:
        if name in known:
            return name
    return next((name for name in sorted(known) if "loss" in name), None)


def job_row(job: dict[str, Any], chosen: str | None = None) -> list[str]:
    """The ``ls`` cells of one job, in :data:`COLUMNS` order."""
    summary = job.get("summary") or {}
    metric = loss_metric(job, chosen)
    last = (summary.get("last") or {}).get(metric) if metric else None
    best = (summary.get("best") or {}).get(metric) if metric else None
    step = job.get("current_step")
    total = job.get("total_steps")
    step_text = "-" if step is None else (f"{step}/{total}" if total else str(step))
    loss = "-" if last is None else number(last)
    if last is not None and not chosen and metric != LOSS_ORDER[0]:
        loss += f" ({metric})"
    best_text = "-"
    if isinstance(best, dict) and best.get("value") is not None:
        best_text = f"{number(best['value'])} @{best.get('step')}"
    eta = "-" if job.get("status") in TERMINAL else duration(job.get("eta_seconds"))
    return [
        str(job.get("id", "")),
        str(job.get("name", "")),
        str(job.get("status", "")),
        step_text,
        loss,
        best_text,
        eta,
    ]


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart (trailing blanks trimmed)."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)


def clock(timestamp: Any) -> str:
    """``HH:MM:SS`` (local time) of an ISO 8601 or Unix timestamp; now when absent."""
    when: dt.datetime | None = None
    if isinstance(timestamp, str):
        try:
            when = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            when = None
    elif isinstance(timestamp, int | float) and math.isfinite(timestamp):
        when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    when = (when or dt.datetime.now(dt.UTC)).astimezone()
    return when.strftime("%H:%M:%S")


def row_fields(row: dict[str, Any], only: set[str] | None = None) -> list[tuple[str, str]]:
    """``(name, value)`` of a row's metrics (``epoch`` first; ``step``/``timestamp`` out)."""
    fields: list[tuple[str, str]] = []
    if "epoch" in row and (only is None or "epoch" in only):
        fields.append(("epoch", number(row["epoch"], 6)))
    for name, value in row.items():
        if name in ("step", "epoch", "timestamp") or (only is not None and name not in only):
            continue
        if isinstance(value, list | dict):
            continue  # nested readings (none on the stream today: GPUs come flattened)
        fields.append((name, number(value, 6)))
    return fields


def describe(item: Item, job_id: str, only: set[str] | None = None) -> str | None:
    """One plain line for ``item`` (None: nothing to print, e.g. a row filtered out)."""
    if isinstance(item, Row):
        fields = row_fields(item.row, only)
        if only is not None and not fields:
            return None
        values = " ".join(f"{name}={value}" for name, value in fields)
        return f"[{clock(item.row.get('timestamp'))}] step={item.row.get('step')} {values}"
    if isinstance(item, Snapshot):
        job = item.job
        step = job_row(job)[3]
        head = "resumed" if item.reconnected else "following"
        return (
            f"[{clock(None)}] {head} {job.get('id', job_id)} {job.get('name', '')!r}: "
            f"status={job.get('status')} step={step}"
        )
    if isinstance(item, StatusChange):
        change = item.change
        message = f": {change['message']}" if change.get("message") else ""
        return (
            f"[{clock(change.get('timestamp'))}] STATUS {change.get('previous_status')} -> "
            f"{change.get('status')}{message}"
        )
    if isinstance(item, Alert):
        event = item.event
        late = " (while disconnected)" if item.missed else ""
        return (
            f"[{clock(event.get('timestamp'))}] ALERT {event.get('severity')} "
            f"{event.get('kind')} step={event.get('step')}: {event.get('message')}{late}"
        )
    if isinstance(item, Deleted):
        return f"[{clock(None)}] DELETED {item.job_id}"
    return None


# --------------------------------------------------------------------------- output


class PlainOutput:
    """Plain text on ``stream``, flushed line by line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def table(self, rows: list[list[str]], *, caption: str | None = None) -> None:
        """The ``ls`` table (the caption goes to stderr: stdout stays parseable)."""
        print(plain_table(COLUMNS, rows), file=self.stream, flush=True)
        if caption:
            print(caption, file=sys.stderr)

    def item(self, item: Item, job_id: str, only: set[str] | None) -> None:
        """One ``tail`` line; connection notices go to stderr."""
        if isinstance(item, Disconnected):
            print(
                f"trainvis tail: connection lost ({item.reason}); retrying in {item.delay:g} s",
                file=sys.stderr,
                flush=True,
            )
            return
        line = describe(item, job_id, only)
        if line is not None:
            print(line, file=self.stream, flush=True)


class RichOutput:
    """Colours and a boxed table through ``rich`` (``console``: any ``rich.console.Console``)."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def table(self, rows: list[list[str]], *, caption: str | None = None) -> None:
        """The ``ls`` table; status coloured, numbers right-aligned."""
        from rich.table import Table
        from rich.text import Text

        table = Table(caption=caption, header_style="bold", expand=False)
        for name in COLUMNS:
            numeric = name in ("STEP", "LOSS", "BEST", "ETA")
            table.add_column(name, justify="right" if numeric else "left", no_wrap=name == "ID")
        for cells in rows:
            styled = [Text(cell) for cell in cells]
            styled[2].stylize(_STATUS_STYLE.get(cells[2], ""))
            if cells[4].startswith(("NaN", "inf", "-inf")):
                styled[4].stylize("bold red")
            table.add_row(*styled)
        self.console.print(table)

    def item(self, item: Item, job_id: str, only: set[str] | None) -> None:
        """One ``tail`` line, coloured by kind (text is never read as markup)."""
        from rich.text import Text

        if isinstance(item, Disconnected):
            self.console.print(
                Text(f"connection lost ({item.reason}); retrying in {item.delay:g} s", "dim")
            )
            return
        if isinstance(item, Row):
            fields = row_fields(item.row, only)
            if only is not None and not fields:
                return
            line = Text.assemble(
                (f"{clock(item.row.get('timestamp'))} ", "dim"),
                ("step ", "dim"),
                (f"{item.row.get('step')}", "bold"),
            )
            for name, value in fields:
                style = "bold red" if value in ("NaN", "inf", "-inf") else ""
                line.append_text(Text.assemble("  ", (name, "cyan"), "=", (value, style)))
            self.console.print(line)
            return
        plain = describe(item, job_id, only)
        if plain is None:
            return
        style = "bold"
        if isinstance(item, Alert):
            style = _SEVERITY_STYLE.get(str(item.event.get("severity")), "bold")
        elif isinstance(item, StatusChange):
            style = _STATUS_STYLE.get(str(item.change.get("status")), "bold")
        elif isinstance(item, Deleted):
            style = "bold red"
        self.console.print(Text(plain, style))


def output(args: argparse.Namespace) -> PlainOutput | RichOutput:
    """Rich on a terminal (``FORCE_COLOR`` counts) when installed, else plain."""
    if args.plain:
        return PlainOutput()
    try:
        from rich.console import Console
    except ImportError:
        return PlainOutput()
    console = Console(highlight=False)
    return RichOutput(console) if console.is_terminal else PlainOutput()


# --------------------------------------------------------------------------- commands


def _ls(args: argparse.Namespace) -> int:
    url, token = _server(args)
    client = ApiClient(url, token=token)
    try:
        jobs, meta = client.list_jobs(
            status=args.status, tag=args.tag, q=args.q, limit=args.limit, offset=args.offset
        )
    except (ServerUnavailable, ApiError) as exc:
        return _fail("ls", url, exc)
    finally:
        client.close()
    total = int(meta.get("total") or len(jobs))
    if not jobs:
        print("no jobs" if not total else f"no jobs past offset {args.offset}", file=sys.stderr)
        return 0
    caption = None
    if total > len(jobs):
        caption = f"{len(jobs)} of {total} jobs (--limit, --offset for more)"
    try:
        output(args).table([job_row(job, args.metric) for job in jobs], caption=caption)
    except BrokenPipeError:
        _quiet_stdout()
    return 0


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _tail(args: argparse.Namespace) -> int:
    url, token = _server(args)
    only = None
    if args.metrics:
        only = {name.strip() for name in args.metrics.split(",") if name.strip()}
    out = output(args)
    follower = JobFollower(url, args.job, token=token, since=args.since)
    try:
        for item in follower.items():
            out.item(item, args.job, only)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `trainvis tail job | head`: the reader has gone
        _quiet_stdout()
        return 0
    except (ServerUnavailable, ApiError) as exc:
        return _fail("tail", url, exc)
    finally:
        follower.close()
    return 0
