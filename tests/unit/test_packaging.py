"""Packaging (issue 14): the SDK installs without the server, pins, no test pages, docs.

``pip install trainvis`` is the SDK (``init``/``log``/``finish``, the HTTP client,
local mode, import/export); ``pip install 'trainvis[server]'`` adds the service.
The SDK tests run in a subprocess in which the server's packages cannot be
imported (a meta-path finder raises ``ModuleNotFoundError`` for them, as in an
SDK-only install), and check that every module the SDK loaded comes from the
base dependencies declared in ``pyproject.toml``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement

from tests.conftest import API, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Top-level modules of the ``server`` and ``postgres`` extras: an SDK-only
#: install has none of them, and the SDK must never try to import one.
SERVER_MODULES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httptools",
    "uvloop",
    "websockets",
    "watchfiles",
    "tsdownsample",
    "psycopg",
    "psycopg_pool",
)
#: Used when installed, absent from an SDK-only install (tried freely): the ``gpu``
#: extra, and httpx's optional command line (click, rich, pygments).
ABSENT_OPTIONAL = ("pynvml", "click", "rich", "pygments")

BLOCKER = """
import importlib.abc, json, sys

ARGS = json.loads(sys.argv[1])
BLOCKED, ABSENT = set(ARGS["blocked"]), set(ARGS["absent"])
attempts = []
before = set(sys.modules)


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in BLOCKED or top in ABSENT:
            if top in BLOCKED:
                attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (not installed)", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""

SDK_RUN = """
import trainvis

run = trainvis.init(
    name="sdk-only", url=ARGS["url"], spool_dir=ARGS["spool"], monitor_system=True  # psutil
)
for step in range(1, 51):
    run.log({"train_loss": 1.0 / step}, step=step)
run.finish()

local = trainvis.init(name="local", db=ARGS["db"], spool_dir=ARGS["spool"])
local.log({"train_loss": 0.5, "accuracy": 0.9}, step=1)
local.finish()

from trainvis.cli import build_parser  # every sub-command registers (not serve's imports)

build_parser()
import trainvis.integrations.common  # noqa: F401  (the callbacks' shared part)
import trainvis.compat.tensorboard  # noqa: F401  (the drop-ins, issue 17)
import trainvis.compat.wandb  # noqa: F401

loaded = sorted({name.partition(".")[0] for name in set(sys.modules) - before})
print(json.dumps({"job": run.id, "attempts": attempts, "loaded": loaded}))
"""

SERVE = """
from trainvis.cli import main

code = main(["serve", "--db", ARGS["db"], "--port", "9"])
print(json.dumps({"code": code, "attempts": attempts}))
"""


def run_without_server(code: str, cwd: Path, **args: Any) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which the server's packages are not installed."""
    payload = json.dumps({"blocked": SERVER_MODULES, "absent": ABSENT_OPTIONAL, **args})
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, payload],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def base_closure() -> set[str]:
    """Normalised names of the base dependencies and everything they require (no extras)."""
    seen: set[str] = set()
    todo = [Requirement(spec) for spec in PYPROJECT["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = normalise(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(requirement.name) or []:
            sub = Requirement(spec)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                todo.append(sub)
    return seen


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.live
def test_sdk_runs_with_only_the_base_dependencies(
    live_server: ServerProcess, tmp_path: Path
) -> None:
    """Issue 14: ``import trainvis; trainvis.init(url=…)`` and local mode need no server package."""
    done = run_without_server(
        SDK_RUN,
        tmp_path,
        url=live_server.url,
        db=str(tmp_path / "local.db"),
        spool=str(tmp_path / "spool"),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["attempts"] == [], "the SDK tried to import server packages"
    history = httpx.get(f"{live_server.url}{API}/training/{report['job']}/metrics/history")
    assert history.status_code == 200 and len(history.json()["data"]) == 50

    provided = metadata.packages_distributions()
    allowed = base_closure() | {"trainvis"}
    stdlib = set(sys.stdlib_module_names)
    foreign = {
        module: sorted(provided.get(module, ["?"]))
        for module in report["loaded"]
        if module not in stdlib and not module.startswith("_") and module != "trainvis"
    }
    outside = {
        module: dists
        for module, dists in foreign.items()
        if not any(normalise(dist) in allowed for dist in dists)
    }
    assert outside == {}, f"SDK modules outside the base dependencies {sorted(allowed)}"


def test_serve_without_the_server_extra_prints_an_install_hint(tmp_path: Path) -> None:
    """Issue 14: ``trainvis serve`` on an SDK-only install says what to install."""
    done = run_without_server(SERVE, tmp_path, db=str(tmp_path / "x.db"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["code"] == 2
    assert "pip install 'trainvis[server]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_base_dependencies_leave_the_server_out() -> None:
    """Issue 14: the SDK's dependencies are not the server's; the ``server`` extra has them."""
    base = {normalise(Requirement(spec).name) for spec in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    server = {normalise(Requirement(spec).name) for spec in extras["server"]}
    assert base.isdisjoint({"fastapi", "starlette", "uvicorn", "tsdownsample", "psycopg"})
    assert {"fastapi", "uvicorn", "tsdownsample"} <= server
    assert any(spec.startswith("trainvis[server") for spec in extras["dev"])


def test_runtime_dependencies_are_ranges_and_dev_tools_are_pinned() -> None:
    """Issue 14: runtime pins have a floor and a ceiling; dev tools are pinned exactly."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    runtime = list(PYPROJECT["project"]["dependencies"])
    for name, specs in extras.items():
        if name != "dev":
            runtime += specs
    for spec in runtime:
        requirement = Requirement(spec)
        if requirement.name == "trainvis":
            continue
        operators = {item.operator for item in requirement.specifier}
        assert operators & {">=", "~="} and operators & {"<", "~="}, spec
    for spec in extras["dev"]:
        requirement = Requirement(spec)
        if requirement.name != "trainvis":
            assert [item.operator for item in requirement.specifier] == ["=="], spec


def test_set_up_commands_install_what_they_run() -> None:
    """The README's set-up installs the server it starts; scripts/test what the suite needs."""
    readme = (ROOT / "README.md").read_text()
    first = next(line for line in readme.splitlines() if "pip install" in line)
    assert "pip install -e '.[server]'" in first and "trainvis serve" in first
    assert "pip install -q -e '.[server,dev,integrations]'" in (ROOT / "scripts/test").read_text()


def test_package_ships_no_test_pages() -> None:
    """Issue 14: React, Recharts and the seed snippets live in tests/, not in the package."""
    dashboard = ROOT / "src" / "trainvis" / "dashboard"
    shipped = [path.relative_to(dashboard).as_posix() for path in dashboard.rglob("*")]
    assert not [path for path in shipped if re.search(r"(^|/)test(/|$)|react|recharts", path, re.I)]
    pages = ROOT / "tests" / "browser" / "pages"
    assert (pages / "seed.html").is_file() and (pages / "vendor" / "Recharts.js").is_file()
    assert (pages / "vendor" / "licenses" / "recharts.LICENSE").is_file()


def docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", docs(), ids=lambda path: path.name)
def test_docs_stay_inside_the_repository(path: Path) -> None:
    """Issue 14: the README and docs/ point at nothing outside the repository."""
    text = path.read_text()
    assert "../shared" not in text
    assert not re.search(r"seed", text, re.I), "documents must not refer to a seed"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), target
