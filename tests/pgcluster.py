"""A throwaway PostgreSQL cluster, for tests that restart, stop or fill one (issue 13).

The shared server at ``TRAINVIS_TEST_PG`` must not be disturbed, so these tests
start their own: ``initdb`` in a temporary directory, ``pg_ctl`` on a free
port, trust authentication. PostgreSQL refuses to run as root, so when the
tests run as root its tools run as the ``postgres`` OS user (``runuser``).
Missing server binaries skip the test (fail it under ``CI=true``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import free_port, require_service


def pg_query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on ``url`` (autocommit); its rows, if it returns any."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(sql.encode(), params)
        return cursor.fetchall() if cursor.description is not None else []


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` OS user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _pg_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


class Cluster:
    """A PostgreSQL cluster in a temporary directory on a free port (trust auth)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        # /tmp, not $TMPDIR: the postgres user must reach it (and the socket path stays short).
        self.root = Path(tempfile.mkdtemp(prefix="trainvis-pgcluster-", dir="/tmp"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = _as_postgres([str(self.bindir / args[0]), *args[1:]])
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def init(self) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        settings = [
            f"port = {self.port}",
            f"unix_socket_directories = '{self.root}'",
            "listen_addresses = '127.0.0.1'",
            "fsync = off",
        ]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n" + "\n".join(settings) + "\n")
        return self

    def pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", *args)

    def start(self) -> None:
        self.pg_ctl("start")

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast")

    def new_database(self) -> str:
        """A new, empty database on this cluster; its URL."""
        name = f"trainvis_test_{uuid.uuid4().hex[:12]}"
        pg_query(self.admin_url, f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-w", "stop", "-m", "immediate", timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started :class:`Cluster`, destroyed afterwards (missing binaries: skip, or
    fail under ``CI=true``)."""
    bindir = _pg_bindir()
    if bindir is None:
        require_service("PostgreSQL server binaries", "no initdb/pg_ctl found")
    assert bindir is not None
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        require_service("PostgreSQL server binaries", "running as root without runuser")
    made = Cluster(bindir)
    try:
        made.init().start()
        yield made
    finally:
        made.destroy()
