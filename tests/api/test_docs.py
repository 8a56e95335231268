"""The README documents every setting; the OpenAPI schema describes every route."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from trainvis.config import SETTINGS, Settings, settings_table

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert f"TRAINVIS_{setting.name.upper()}" in readme, setting.name


def test_readme_configuration_table_is_generated_from_settings() -> None:
    """The README's table is :func:`settings_table` verbatim (issue 14: one declaration).

    Regenerate it with ``python -c "from trainvis.config import settings_table;
    print(settings_table())"`` after changing a setting.
    """
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme


def test_settings_table_matches_dataclass() -> None:
    defaults = Settings()
    for setting in SETTINGS:
        value = getattr(defaults, setting.name)
        assert value == setting.default or (value == () and setting.default == ()), setting.name


def test_openapi_lists_the_seed_endpoints(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    prefix = "/api/v1/visualization"
    assert set(paths[f"{prefix}/training/jobs"]) >= {"get", "post"}
    assert set(paths[f"{prefix}/training/jobs/{{job_id}}"]) >= {"get", "delete"}
    assert "put" in paths[f"{prefix}/training/jobs/{{job_id}}/status"]
    assert "post" in paths[f"{prefix}/training/{{job_id}}/metrics"]
    assert "get" in paths[f"{prefix}/training/{{job_id}}/metrics/history"]
    body = paths[f"{prefix}/training/{{job_id}}/metrics"]["post"]["requestBody"]
    schema_text = str(body)
    assert "MetricRowIn" in schema_text
    assert "MetricRowIn" in schema["components"]["schemas"]
    assert "GpuReading" in schema["components"]["schemas"]
