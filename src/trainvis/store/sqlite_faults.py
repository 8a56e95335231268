"""Storage faults of the SQLite file, told apart and opened read-only (issue 13).

SQLite reports a full disk as ``SQLITE_FULL`` and a file it may not write as
``SQLITE_READONLY``; but a filesystem that goes read-only under an open
connection (the kernel's answer to a disk error) surfaces as a plain I/O error
(``SQLITE_IOERR``), and so can a full disk. :func:`storage_error` asks the
filesystem which it was.

A database that is read-only when the store opens (read-only mount, a file
the process may not write) is opened with a read-only URI
(:func:`read_only_uri`) and served as it is: reads work, writes answer 503.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
import urllib.parse

from trainvis.errors import DISK_FULL, READ_ONLY, InsufficientStorage, PublicError, StoreReadOnly


def _directory(path: str) -> str:
    return os.path.dirname(os.path.abspath(path)) or "."


def is_read_only(path: str) -> bool:
    """Whether the database at ``path`` cannot be written: a read-only filesystem,
    or a file (or directory, for the journal files) this process may not write."""
    directory = _directory(path)
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return True
    return not os.access(directory, os.W_OK)


def _probe(path: str) -> int | None:
    """The ``errno`` of writing a page to a nameless file beside the database (None: it
    worked). The kernel says what the filesystem is refusing, which SQLite's I/O error
    does not: ext4's emergency read-only mode, for one, is invisible to ``statvfs``."""
    try:
        with tempfile.TemporaryFile(dir=_directory(path)) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return exc.errno
    return None


def storage_error(exc: sqlite3.Error, path: str) -> PublicError | None:
    """The client-facing error for a storage fault behind ``exc``, or None if it is none.

    Disk full → :class:`~trainvis.errors.InsufficientStorage` (507); a database that
    cannot be written → :class:`~trainvis.errors.StoreReadOnly` (503).
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_FULL:
        return InsufficientStorage(DISK_FULL)
    if primary == sqlite3.SQLITE_READONLY:
        return StoreReadOnly(READ_ONLY)
    if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        if is_read_only(path):
            return StoreReadOnly(READ_ONLY)
        refused = _probe(path)
        if refused in (errno.EROFS, errno.EACCES, errno.EPERM):
            return StoreReadOnly(READ_ONLY)
        if refused in (errno.ENOSPC, errno.EDQUOT):
            return InsufficientStorage(DISK_FULL)
    return None


def read_only_uri(path: str) -> str:
    """A URI that opens the existing database at ``path`` without writing anything.

    With a write-ahead log left behind (a server that was killed), SQLite reads
    it through ``mode=ro``; without one, nothing can create the ``-shm`` index a
    WAL database needs, so the file is opened ``immutable`` (nothing else can
    write to it while it is read-only either).

    Raises:
        RuntimeError: the file does not exist (nothing to serve).
    """
    if not os.path.exists(path):
        raise RuntimeError(f"database {path!r} does not exist and cannot be created (read-only)")
    base = "file:" + urllib.parse.quote(os.path.abspath(path))
    wal = f"{path}-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        return f"{base}?mode=ro"
    return f"{base}?mode=ro&immutable=1"
