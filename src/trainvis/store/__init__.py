"""Storage backends behind one protocol; :func:`open_store` picks one from a URL."""

from __future__ import annotations

from trainvis.series import Series
from trainvis.store.base import JobFilter, MetricStore, StoreError

__all__ = ["JobFilter", "MetricStore", "Series", "StoreError", "open_store"]


def open_store(url: str) -> MetricStore:
    """Open (and migrate) the store at ``url``.

    ``postgresql://…`` (or ``postgres://…``) opens PostgreSQL (needs the
    ``trainvis[postgres]`` extra); anything else is an SQLite file path,
    optionally written ``sqlite:///path``.
    """
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from trainvis.store.postgres import PostgresStore

        return PostgresStore(url)
    from trainvis.store.sqlite import SQLiteStore

    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    return SQLiteStore(url)
