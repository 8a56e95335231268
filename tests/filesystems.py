"""Real small, full and read-only filesystems for the storage-fault tests (issue 13).

The tests run as root, and root ignores file permissions: ``chmod a-w`` does
not stop it from writing. What does stop root, and what these helpers use:

- a **tmpfs of a few MiB** (``mount -t tmpfs -o size=…``): writes beyond its
  size fail with ``ENOSPC``, a real full disk;
- the same tmpfs **remounted read-only** (``mount -o remount,ro``): every
  write fails with ``EROFS``, for root too. Linux refuses the remount while a
  file on it is open for writing, so this makes a database read-only *between*
  server runs;
- an **ext4 image on a loop device mounted ``errors=remount-ro``**, then
  ``/sys/fs/ext4/<dev>/trigger_fs_error``: the kernel reacts to a (simulated)
  filesystem error by remounting it read-only at once, open files included,
  exactly what a failing disk does to a running server.

Each helper skips (or, under ``CI=true``, fails) with the reason when the
machine does not allow it (not root, no loop devices, no mkfs.ext4).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import require_service


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=60)


def _unmount(where: Path) -> None:
    if _run("umount", str(where)).returncode != 0:
        _run("umount", "-l", str(where))  # still busy: detach now, freed when closed


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "4m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted on ``where`` (created), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        require_service("a tmpfs mount", "mounting needs root")
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where))
    if mounted.returncode != 0:
        require_service("a tmpfs mount", mounted.stderr.strip())
    try:
        yield where
    finally:
        _unmount(where)


def remount(where: Path, mode: str) -> None:
    """Remount the filesystem at ``where`` ``ro`` or ``rw`` (raises when Linux refuses)."""
    done = _run("mount", "-o", f"remount,{mode}", str(where))
    if done.returncode != 0:
        raise RuntimeError(f"remount,{mode} {where}: {done.stderr.strip()}")


def fill(where: Path, *, leave: int = 0) -> Path:
    """Fill the filesystem at ``where`` up to ``leave`` free bytes with one file."""
    filler = where / "filler"
    free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
    with filler.open("wb") as out:
        with contextlib.suppress(OSError):  # ENOSPC: as full as it gets
            out.write(b"\0" * max(0, free - leave))
    return filler


class Ext4Image:
    """An ext4 filesystem in a file, loop-mounted with ``errors=remount-ro``."""

    def __init__(self, image: Path, where: Path) -> None:
        self.image, self.where = image, where
        self.device = ""

    def __enter__(self) -> Ext4Image:
        if os.geteuid() != 0:
            require_service("a loop-mounted ext4 image", "mounting needs root")
        if shutil.which("mkfs.ext4") is None:
            require_service("a loop-mounted ext4 image", "mkfs.ext4 is not installed")
        self.where.mkdir(parents=True, exist_ok=True)
        with self.image.open("wb") as out:
            out.truncate(16 * 1024 * 1024)
        made = _run("mkfs.ext4", "-q", "-F", str(self.image))
        if made.returncode != 0:
            require_service("a loop-mounted ext4 image", made.stderr.strip())
        mounted = _run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.where))
        if mounted.returncode != 0:
            require_service("a loop-mounted ext4 image", mounted.stderr.strip())
        source = _run("findmnt", "-n", "-o", "SOURCE", str(self.where)).stdout.strip()
        self.device = Path(source).name
        self.where.chmod(0o777)
        if not self.trigger.exists():
            self.__exit__()
            require_service("ext4 error injection", f"{self.trigger} does not exist")
        return self

    @property
    def trigger(self) -> Path:
        return Path("/sys/fs/ext4") / self.device / "trigger_fs_error"

    def fail(self) -> None:
        """Report a filesystem error: the kernel remounts it read-only at once."""
        self.trigger.write_text("trainvis test: simulated disk failure\n")

    def __exit__(self, *exc: object) -> None:
        _unmount(self.where)
