"""Job events as chart annotations: vertical markers at their steps.

A chart config carries the events that concern it under
``options.plugins.trainvisEvents.markers``, each exactly as ``GET …/events``
returns it. The dashboard registers a small Chart.js plugin of that id
(``dashboard/js/annotations.js``) that draws a dashed vertical line per event;
any other Chart.js ignores the options of a plugin it does not have, so the
config still renders as is (the seed's snippets included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PLUGIN_ID = "trainvisEvents"
#: Markers per chart at most (the earliest steps win beyond that).
MAX_CHART_EVENTS = 500


def chart_events(
    events: Iterable[Mapping[str, Any]], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """The events a chart of ``metrics`` shows: those of its metrics, and those of none
    (notes without a metric mark every chart)."""
    shown = set(metrics)
    return [
        dict(event) for event in events if event.get("metric") in shown or not event.get("metric")
    ]


def attach_events(
    config: dict[str, Any], events: Iterable[Mapping[str, Any]], metrics: Sequence[str]
) -> int:
    """Put the events that concern the chart into ``config``; returns how many.

    Nothing is added when none does, so configs of jobs without events are
    unchanged.
    """
    chosen = chart_events(events, metrics)
    if chosen:
        plugins = config.setdefault("options", {}).setdefault("plugins", {})
        plugins[PLUGIN_ID] = {"markers": chosen}
    return len(chosen)
