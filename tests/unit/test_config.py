"""Settings: one declaration, from which flags, environment and docs derive (issue 14)."""

from __future__ import annotations

import pytest

from trainvis.cli import build_parser
from trainvis.config import SETTINGS, Settings

SAMPLES = {int: "7", float: "2.5", str: "value"}


def _serve_actions() -> dict[str, object]:
    parser = build_parser()
    serve = next(
        action
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
    ).choices["serve"]
    return {action.dest: action for action in serve._actions}


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_has_a_serve_flag(name: str) -> None:
    action = _serve_actions()[name]
    assert f"--{name.replace('_', '-')}" in action.option_strings  # type: ignore[attr-defined]
    assert f"TRAINVIS_{name.upper()}" in action.help  # type: ignore[attr-defined]


def test_flags_win_over_environment_and_environment_over_defaults() -> None:
    env = {"TRAINVIS_PORT": "9001", "TRAINVIS_HOST": "0.0.0.0", "TRAINVIS_HEALTH": "off"}
    settings = Settings.from_env(env, port=9002)
    assert (settings.port, settings.host, settings.health) == (9002, "0.0.0.0", False)
    assert Settings.from_env({}).port == 8000


def test_environment_values_are_parsed_by_type() -> None:
    settings = Settings.from_env(
        {
            "TRAINVIS_CORS_ORIGINS": "http://a.test, http://b.test",
            "TRAINVIS_SSE_HEARTBEAT": "0.5",
            "TRAINVIS_INSECURE": "true",
            "TRAINVIS_LOG_LEVEL": "DEBUG",
        }
    )
    assert settings.cors_origins == ("http://a.test", "http://b.test")
    assert settings.sse_heartbeat == 0.5 and settings.insecure and settings.log_level == "debug"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TRAINVIS_PORT": "eighty"}, "TRAINVIS_PORT"),
        ({"TRAINVIS_PORT": "70000"}, "TRAINVIS_PORT"),
        ({"TRAINVIS_MAX_ROWS": "0"}, "TRAINVIS_MAX_ROWS"),
        ({"TRAINVIS_WEBHOOK_FORMAT": "xml"}, "TRAINVIS_WEBHOOK_FORMAT"),
    ],
)
def test_a_bad_variable_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Settings.from_env(env)


def test_serve_flags_parse_into_settings() -> None:
    args = build_parser().parse_args(
        ["serve", "--port", "9100", "--no-health", "--log-level", "WARNING"]
    )
    given = {name: getattr(args, name) for name in Settings.model_fields}
    settings = Settings.from_env({}, **given)
    assert (settings.port, settings.health, settings.log_level) == (9100, False, "warning")


def test_settings_table_rows_come_from_the_model() -> None:
    assert [item.name for item in SETTINGS] == list(Settings.model_fields)
    assert all(item.help for item in SETTINGS)
