"""Realtime delivery: the broker (publish / subscribe with resume) and SSE encoding.

``api`` publishes after each commit through :class:`Broker`; ``api.stream``
subscribes and writes an :class:`EventStreamResponse`. See ``ARCHITECTURE.md``.
"""

from trainvis.realtime.broker import Broker, Fanout, InProcessBroker
from trainvis.realtime.factory import make_broker
from trainvis.realtime.sse import EventStreamResponse, StreamEnded, encode_event
from trainvis.realtime.subscription import Batch, Item, Subscription

__all__ = [
    "Batch",
    "Broker",
    "EventStreamResponse",
    "Fanout",
    "InProcessBroker",
    "Item",
    "StreamEnded",
    "Subscription",
    "encode_event",
    "make_broker",
]
