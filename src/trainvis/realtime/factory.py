"""Choose the broker for a store: LISTEN/NOTIFY on PostgreSQL, in-process otherwise.

It lives apart from both brokers so that neither imports the other's module
(the PostgreSQL broker extends the in-process one).
"""

from __future__ import annotations

from trainvis.config import Settings
from trainvis.realtime.broker import InProcessBroker
from trainvis.store.base import MetricStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def make_broker(settings: Settings, store: MetricStore) -> InProcessBroker:
    """The broker for ``settings``: LISTEN/NOTIFY on PostgreSQL (so replicas
    sharing the database see each other's rows), in-process otherwise."""
    if settings.db.startswith(POSTGRES_SCHEMES):
        from trainvis.realtime.pg_broker import make_postgres_broker

        return make_postgres_broker(settings, store)
    return InProcessBroker(store, queue_size=settings.sse_queue_size)
