// Job events (health alerts and notes) drawn on a Chart.js chart as vertical markers.
// Chart configs from the API carry the events under options.plugins.trainvisEvents.markers;
// the job page adds `x` (the axis mode) and `t0`, and appends live alerts to the list.

export const PLUGIN_ID = "trainvisEvents";
const COLORS = { critical: "#dc2626", warning: "#d97706", info: "#6b7280" };
const NOTE_COLOR = "#2563eb";
const HIT_PX = 5; // how close the pointer must be to a marker to show its message

export function eventColor(event) {
  return event.kind === "note" ? NOTE_COLOR : COLORS[event.severity] || COLORS.info;
}

/** The raw (unproxied) plugin options of a chart: {markers, x, t0}. */
export function markerOptions(chart) {
  return chart.config.options?.plugins?.[PLUGIN_ID] || null;
}

/** The x value of an event on the chart's axis (null when the axis cannot place it). */
function xValue(event, opts) {
  switch (opts.x || "step") {
    case "step":
      return event.step;
    case "time":
      return event.timestamp ? Date.parse(event.timestamp) : null;
    case "relative_time":
      if (!event.timestamp || opts.t0 === null || opts.t0 === undefined) return null;
      return Date.parse(event.timestamp) / 1000 - opts.t0;
    default:
      return null; // epoch: an event knows its step, not its epoch
  }
}

function drawFlag(ctx, px, top, color) {
  ctx.setLineDash([]);
  ctx.fillStyle = color;
  ctx.beginPath();
  ctx.moveTo(px - 5, top);
  ctx.lineTo(px + 5, top);
  ctx.lineTo(px, top + 7);
  ctx.closePath();
  ctx.fill();
}

function drawLabel(chart, marker) {
  const { ctx, chartArea: area } = chart;
  const text = `step ${marker.event.step}: ${marker.event.message}`;
  ctx.font = "12px system-ui, sans-serif";
  const width = Math.min(ctx.measureText(text).width + 12, area.right - area.left);
  const left = Math.max(area.left, Math.min(marker.x + 8, area.right - width));
  ctx.fillStyle = "rgba(17, 24, 39, 0.88)";
  ctx.fillRect(left, area.top + 10, width, 20);
  ctx.fillStyle = "#fff";
  ctx.textBaseline = "middle";
  ctx.fillText(text, left + 6, area.top + 20, width - 12);
}

/** The plugin: dashed vertical line and a flag per event; hover shows its message. */
export const eventsPlugin = {
  id: PLUGIN_ID,

  afterDatasetsDraw(chart) {
    const opts = markerOptions(chart);
    const markers = [];
    chart.$trainvisMarkers = markers;
    if (!opts || !Array.isArray(opts.markers) || !opts.markers.length) return;
    const { ctx, chartArea: area, scales } = chart;
    if (!area || !scales.x) return;
    ctx.save();
    for (const event of opts.markers) {
      const value = xValue(event, opts);
      if (value === null || !Number.isFinite(value)) continue;
      const px = scales.x.getPixelForValue(value);
      if (!Number.isFinite(px) || px < area.left - 0.5 || px > area.right + 0.5) continue;
      const color = eventColor(event);
      ctx.strokeStyle = color;
      ctx.lineWidth = event.severity === "critical" ? 2 : 1.5;
      ctx.setLineDash([5, 4]);
      ctx.beginPath();
      ctx.moveTo(px, area.top);
      ctx.lineTo(px, area.bottom);
      ctx.stroke();
      drawFlag(ctx, px, area.top, color);
      markers.push({ id: event.id, step: event.step, kind: event.kind, x: px, event });
    }
    if (chart.$trainvisHover) {
      const hovered = markers.find((m) => m.id === chart.$trainvisHover);
      if (hovered) drawLabel(chart, hovered);
    }
    ctx.restore();
  },

  afterEvent(chart, args) {
    const { event } = args;
    const markers = chart.$trainvisMarkers || [];
    let hit = null;
    if (event.type === "mousemove" && markers.length) {
      const near = markers.filter((m) => Math.abs(m.x - event.x) <= HIT_PX);
      if (near.length && event.y >= chart.chartArea.top && event.y <= chart.chartArea.bottom) {
        hit = near[near.length - 1].id;
      }
    }
    if (hit !== (chart.$trainvisHover ?? null)) {
      chart.$trainvisHover = hit;
      args.changed = true; // redraw to show or hide the label
    }
  },
};

/** Put `events` on a chart config (merged by id with what the API already put there). */
export function withEvents(config, events, axis, t0) {
  const given = config.options?.plugins?.[PLUGIN_ID]?.markers || [];
  const byId = new Map(given.map((event) => [event.id, event]));
  for (const event of events) byId.set(event.id, event);
  config.options.plugins = {
    ...config.options.plugins,
    [PLUGIN_ID]: { markers: [...byId.values()], x: axis, t0: t0 ?? null },
  };
  config.plugins = [...(config.plugins || []), eventsPlugin];
  return config;
}

/** Add one event to a live chart (no-op if it is there already); returns whether it changed. */
export function addEventTo(chart, event) {
  const opts = markerOptions(chart);
  if (!opts) return false;
  if (opts.markers.some((known) => known.id === event.id)) return false;
  opts.markers.push(event);
  return true;
}
