"""The pieces of ``trainvis ls`` / ``tail`` (issue 17): the client's SSE parser, the
cells and lines they print, and the rich rendering on a (forced) terminal."""

from __future__ import annotations

import io
from typing import Any

import pytest

from trainvis.client.stream import (
    Alert,
    Deleted,
    Disconnected,
    EventParser,
    Row,
    ServerEvent,
    Snapshot,
    StatusChange,
)
from trainvis.client.terminal import (
    COLUMNS,
    PlainOutput,
    RichOutput,
    describe,
    duration,
    job_row,
    loss_metric,
    number,
    plain_table,
)


def parse(text: str) -> tuple[list[ServerEvent], EventParser]:
    parser = EventParser()
    events = [event for line in text.split("\n") if (event := parser.feed(line)) is not None]
    return events, parser


def test_parser_reads_the_stream_as_an_eventsource_does() -> None:
    events, parser = parse(
        "retry: 2500\n\n"
        'data: {"type":"snapshot"}\n\n'
        ": heartbeat\n\n"
        'event: metrics\nid: 7\ndata: {"step":1}\n\n'
        "event: note\ndata:first\ndata: second\ndata\n\n"
        "id: 9\n\n"  # no data: nothing dispatched
        "event: alert\ndata: {}"  # no blank line after it: not dispatched
    )
    assert parser.retry_ms == 2500
    assert events == [
        ServerEvent("message", '{"type":"snapshot"}'),
        ServerEvent("metrics", '{"step":1}', "7"),
        ServerEvent("note", "first\nsecond\n"),
    ]
    assert events[1].json() == {"step": 1}


def test_numbers_and_durations_for_people() -> None:
    assert [number(v) for v in (0.123456, 2.0, 7, "NaN", "Infinity", None, 1e-7)] == [
        "0.1235",
        "2",
        "7",
        "NaN",
        "inf",
        "-",
        "1e-07",
    ]
    assert number(0.1234567, 6) == "0.123457"
    assert [duration(s) for s in (None, -1, 45, 725, 3 * 3600 + 245, 2 * 86400 + 3 * 3600)] == [
        "-",
        "-",
        "45s",
        "12m05s",
        "3h04m",
        "2d03h",
    ]


def job(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "job-007",
        "name": "bert",
        "status": "running",
        "current_step": 500,
        "total_steps": 1000,
        "eta_seconds": 90.4,
        "metric_names": ["learning_rate", "train_loss", "val_loss"],
        "summary": {
            "last": {"train_loss": 0.25, "val_loss": "NaN", "learning_rate": 1e-4},
            "best": {
                "train_loss": {"value": 0.2, "step": 450},
                "val_loss": {"value": 0.31, "step": 400},
            },
        },
    }
    return {**base, **extra}


def test_the_loss_columns_pick_train_loss_then_any_loss() -> None:
    assert loss_metric(job()) == "train_loss"
    assert loss_metric(job(metric_names=["val_loss", "aux_loss"], summary={})) == "val_loss"
    assert loss_metric(job(metric_names=["z_loss", "a_loss"], summary={})) == "a_loss"
    assert loss_metric(job(metric_names=["accuracy"], summary={})) is None
    assert loss_metric(job(), "accuracy") == "accuracy"


def test_job_row_cells() -> None:
    assert job_row(job()) == ["job-007", "bert", "running", "500/1000", "0.25", "0.2 @450", "1m30s"]
    assert job_row(job(), "val_loss")[4:6] == ["NaN", "0.31 @400"]
    done = job(status="completed", current_step=None, total_steps=None, summary={}, metric_names=[])
    assert job_row(done)[3:] == ["-", "-", "-", "-"]
    only_val = job(metric_names=["val_loss"], summary={"last": {"val_loss": 0.5}, "best": {}})
    assert job_row(only_val)[4:6] == ["0.5 (val_loss)", "-"]


def test_plain_table_aligns_columns() -> None:
    text = plain_table(["A", "BB"], [["long cell", "x"], ["y", "z"]])
    assert text.splitlines() == ["A          BB", "long cell  x", "y          z"]


def test_plain_lines_of_every_item() -> None:
    row = Row(3, {"step": 3, "epoch": 1, "timestamp": "2026-01-01T00:00:00Z", "train_loss": 0.5})
    assert describe(row, "job-1").endswith("] step=3 epoch=1 train_loss=0.5")  # type: ignore[union-attr]
    assert describe(row, "job-1", {"accuracy"}) is None
    snapshot = describe(Snapshot(job(), reconnected=True), "job-007")
    assert (
        snapshot is not None and "resumed job-007 'bert': status=running step=500/1000" in snapshot
    )
    change = {"status": "failed", "previous_status": "running", "message": "OOM", "timestamp": 0}
    assert describe(StatusChange(change), "j") is not None
    assert "STATUS running -> failed: OOM" in (describe(StatusChange(change), "j") or "")
    alert = {"severity": "critical", "kind": "nonfinite", "step": 4, "message": "loss is NaN"}
    assert "ALERT critical nonfinite step=4: loss is NaN (while disconnected)" in (
        describe(Alert(alert, missed=True), "j") or ""
    )
    assert "DELETED job-9" in (describe(Deleted("job-9"), "job-9") or "")


def test_plain_output_sends_notices_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    out = PlainOutput()
    out.item(Disconnected("ConnectError", 2.0), "j", None)
    out.item(Row(1, {"step": 1, "train_loss": 1.0}), "j", None)
    captured = capsys.readouterr()
    assert "connection lost (ConnectError); retrying in 2 s" in captured.err
    assert captured.out.strip().endswith("step=1 train_loss=1")


def forced_terminal() -> tuple[Any, io.StringIO]:
    """A rich console that believes it writes to a colour terminal (rich is optional)."""
    console_module = pytest.importorskip("rich.console")
    Console = console_module.Console
    buffer = io.StringIO()
    console = Console(
        file=buffer, force_terminal=True, color_system="standard", width=120, highlight=False
    )
    return console, buffer


def test_rich_table_colours_status_and_never_reads_markup() -> None:
    console, buffer = forced_terminal()
    rows = [job_row(job(name="[red]x[/red]")), job_row(job(id="job-008", status="failed"))]
    RichOutput(console).table(rows, caption="2 of 9 jobs")
    text = buffer.getvalue()
    assert "\x1b[" in text and "┃" in text and "2 of 9 jobs" in text
    assert "[red]x[/red]" in text
    for name in COLUMNS:
        assert name in text
    assert "\x1b[1;31mfailed" in text  # bold red


def test_rich_tail_lines() -> None:
    console, buffer = forced_terminal()
    out = RichOutput(console)
    out.item(Row(1, {"step": 12, "train_loss": "NaN", "lr": 0.1}), "j", None)
    out.item(
        Alert({"severity": "critical", "kind": "spike", "step": 12, "message": "[b]"}), "j", None
    )
    text = buffer.getvalue()
    assert "\x1b[1;31mNaN" in text and "\x1b[36mtrain_loss" in text
    assert "ALERT critical spike step=12: [b]" in text
