// The job page's four Chart.js charts: loaded from the chart endpoints, then fed
// live rows from the SSE stream (points appended in place, no reload).

import { addEventTo, withEvents } from "./annotations.js";
import { el, getJSON, num, throttle, upsert } from "./common.js";
import { applyTicks } from "./ticks.js";

export const KINDS = ["loss", "gpu", "metrics", "learning_rate"];
const ENDPOINT = {
  loss: "loss",
  gpu: "gpu",
  metrics: "metrics/chart",
  learning_rate: "learning-rate",
};
const SECONDARY_GPU = /^gpu(\d+|\/[^/]+\/\d+)\.(memory_total|temperature|power)$/;
const REFETCH_FACTOR = 3; // re-request a chart once live points triple its budget
const PER_DEVICE = /^gpu\d+\./;
const BAND_ROLES = new Set(["band_min", "band_max"]);

/** The legend entry a dataset belongs to: its metric (raw, smoothed and band together). */
function legendKey(dataset) {
  return dataset.metric ?? dataset.label;
}

/** Whether a job event is drawn on a chart of `kind` (notes without a metric go everywhere). */
export function showsEvent(kind, event) {
  return !event.metric || kindOf(event.metric) === kind;
}

/** Which chart a metric belongs to (the server's default selection rules). */
export function kindOf(metric) {
  if (metric.startsWith("gpu")) return "gpu";
  if (metric.includes("loss")) return "loss";
  if (metric.includes("learning_rate") || metric.includes("lr")) return "learning_rate";
  return "metrics";
}

export class JobCharts {
  constructor(jobId, canvases, { legends = {} } = {}) {
    this.jobId = jobId;
    this.canvases = canvases; // kind -> canvas
    this.legends = legends; // kind -> element for the chart's HTML legend
    this.legendKey = `trainvis:legend:${jobId}`;
    this.choices = this.loadChoices(); // kind -> Map(legend key -> hidden)
    this.charts = {}; // kind -> Chart
    this.meta = {}; // kind -> meta of the last response
    this.view = {
      smoothing: 0,
      x: "step",
      logScale: false,
      startStep: null,
      endStep: null,
      gpuAggregate: false,
    };
    this.loadedStep = -1;
    this.loading = null;
    this.buffer = [];
    this.dirty = new Set();
    this.frame = 0;
    this.stale = new Set();
    this.tickets = {};
    this.events = new Map(); // id -> job event (alerts and notes), drawn as markers
    this.refetch = throttle(() => this.reloadStale(), 1000);
  }

  /** Draw a job event (from the events list or a live alert) on the charts it concerns. */
  addEvent(event) {
    this.events.set(event.id, event);
    for (const kind of KINDS) {
      const chart = this.charts[kind];
      if (chart && showsEvent(kind, event) && addEventTo(chart, event)) chart.update("none");
    }
  }

  query(kind) {
    const q = new URLSearchParams({ x: this.view.x });
    if (this.view.smoothing > 0) {
      q.set("smooth", "true");
      q.set("smooth_factor", String(Number((1 - this.view.smoothing).toFixed(4))));
    }
    if (this.view.logScale && kind !== "gpu") q.set("log_scale", "true");
    if (kind === "gpu" && this.view.gpuAggregate) q.set("aggregate", "true");
    if (this.view.startStep !== null) q.set("start_step", String(this.view.startStep));
    if (this.view.endStep !== null) q.set("end_step", String(this.view.endStep));
    return q;
  }

  url(kind) {
    return `/training/${encodeURIComponent(this.jobId)}/${ENDPOINT[kind]}?${this.query(kind)}`;
  }

  /** (Re)load every chart with the current view; live rows wait in a buffer meanwhile. */
  async load(currentStep) {
    // All four requests at once; each chart is drawn as soon as its answer arrives.
    const run = Promise.all(
      KINDS.map(async (kind) => this.draw(kind, await this.fetchOne(kind))),
    );
    this.loading = run;
    try {
      await run;
    } finally {
      if (this.loading === run) {
        this.loading = null;
        this.loadedStep = Math.max(this.loadedStep, currentStep ?? -1);
        const pending = this.buffer;
        this.buffer = [];
        for (const row of pending) this.addRow(row);
      }
    }
  }

  /** Request one chart; resolves to {ticket, body} or {ticket, error} (never rejects). */
  async fetchOne(kind) {
    const ticket = (this.tickets[kind] = (this.tickets[kind] || 0) + 1);
    try {
      return { ticket, body: await getJSON(this.url(kind)) };
    } catch (error) {
      return { ticket, error };
    }
  }

  async loadOne(kind) {
    const fetched = await this.fetchOne(kind);
    if (fetched.error) throw fetched.error;
    this.draw(kind, fetched);
  }

  /** Replace a chart with a fetched config (unless a newer request for it was made). */
  draw(kind, { ticket, body, error }) {
    if (ticket !== this.tickets[kind]) return;
    if (error) {
      if (!(error.status >= 400 && error.status < 500)) this.markStale(kind); // retry 5xx/offline
      return;
    }
    this.meta[kind] = body.meta;
    const config = body.data;
    config.options = { ...config.options, animation: false, maintainAspectRatio: false };
    const choices = this.choices.get(kind) || new Map();
    for (const dataset of config.data.datasets) {
      if (dataset.role === "smoothed") dataset._ema = lastFinite(dataset.data);
      // Per-device totals, temperature and power crowd the GPU chart: one legend click shows them.
      if (kind === "gpu" && SECONDARY_GPU.test(dataset.metric || "")) dataset.hidden = true;
      // The user's legend choices outlive reloads and control changes.
      if (choices.has(legendKey(dataset))) dataset.hidden = choices.get(legendKey(dataset));
    }
    // The legend is HTML under the canvas (never takes the plot's space).
    const plugins = (config.options.plugins ||= {});
    plugins.legend = { ...plugins.legend, display: !this.legends[kind] && plugins.legend?.display !== false };
    applyTicks(config);
    if (kind === "gpu") {
      // Axes whose datasets are all hidden (temperature, power) disappear until shown.
      for (const scale of Object.values(config.options.scales || {})) scale.display = "auto";
    }
    const known = [...this.events.values()].filter((event) => showsEvent(kind, event));
    withEvents(config, known, this.view.x, body.meta?.t0);
    const old = this.charts[kind];
    if (old) old.destroy();
    this.charts[kind] = new window.Chart(this.canvases[kind], config);
    this.stale.delete(kind);
    this.renderLegend(kind);
  }

  loadChoices() {
    const choices = new Map();
    try {
      const stored = JSON.parse(localStorage.getItem(this.legendKey) || "[]");
      for (const [kind, entries] of stored) choices.set(kind, new Map(entries));
    } catch (_) {
      /* unreadable: start without choices */
    }
    return choices;
  }

  saveChoices() {
    const entries = [...this.choices].map(([kind, map]) => [kind, [...map]]);
    localStorage.setItem(this.legendKey, JSON.stringify(entries));
  }

  /** Show or hide every dataset of a legend entry, and remember the choice. */
  toggle(kind, key) {
    const chart = this.charts[kind];
    if (!chart) return;
    const sets = chart.data.datasets.filter((d) => legendKey(d) === key);
    const hidden = !sets.every((d) => d.hidden);
    for (const d of sets) d.hidden = hidden;
    if (!this.choices.has(kind)) this.choices.set(kind, new Map());
    this.choices.get(kind).set(key, hidden);
    this.saveChoices();
    chart.update("none");
    this.renderLegend(kind);
  }

  /** One button per legend entry (a metric's raw, smoothed and band datasets share one). */
  renderLegend(kind) {
    const box = this.legends[kind];
    const chart = this.charts[kind];
    if (!box || !chart) return;
    const entries = new Map(); // legend key -> {label, color, hidden}
    for (const d of chart.data.datasets) {
      if (BAND_ROLES.has(d.role)) continue;
      const key = legendKey(d);
      const entry = entries.get(key);
      if (!entry || d.role === "raw" || d.role === "mean") {
        const label = String(d.label ?? key).replace(/ \(smoothed\)$/, "");
        entries.set(key, { label, color: d.borderColor, hidden: Boolean(d.hidden) });
      }
    }
    const items = [...entries].map(([key, entry]) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = typeof entry.color === "string" ? entry.color : "";
      return el(
        "button",
        {
          type: "button",
          class: "legend-item",
          "aria-pressed": String(!entry.hidden),
          dataset: { key },
          title: entry.label,
          onclick: () => this.toggle(kind, key),
        },
        swatch,
        el("span", { class: "legend-label" }, entry.label),
      );
    });
    const omitted = this.meta[kind]?.metrics_omitted || 0;
    if (omitted > 0) {
      const more = `+${omitted.toLocaleString()} more in the panels below`;
      items.unshift(el("a", { class: "legend-item legend-more", href: "#metrics" }, more));
    }
    for (const node of box.querySelectorAll(".legend-item")) node.remove();
    box.append(...items);
  }

  async reloadStale() {
    if (this.loading) {
      this.refetch();
      return;
    }
    const kinds = [...this.stale];
    this.stale.clear();
    await Promise.all(kinds.map((kind) => this.loadOne(kind).catch(() => this.stale.add(kind))));
  }

  /** The x value of a live row on the current axis (null when it has none). */
  xOf(row, kind) {
    switch (this.view.x) {
      case "step":
        return row.step;
      case "epoch":
        return row.epoch ?? null;
      case "time":
        return row.timestamp ? Date.parse(row.timestamp) : null;
      default: {
        const t0 = this.meta[kind]?.t0;
        if (!row.timestamp || t0 === undefined || t0 === null) return null;
        return Date.parse(row.timestamp) / 1000 - t0;
      }
    }
  }

  /** Append (or replace) one live row's values in every chart showing its metrics. */
  addRow(row) {
    if (this.loading) {
      this.buffer.push(row);
      return;
    }
    // Epochs repeat across steps, so an equal x cannot mean "the same row": skip
    // rows the loaded data already has instead (other axes replace equal x).
    const byEpoch = this.view.x === "epoch";
    if (byEpoch && row.step <= this.loadedStep) return;
    if (this.view.startStep !== null && row.step < this.view.startStep) return;
    if (this.view.endStep !== null && row.step > this.view.endStep) return;
    const alpha = this.view.smoothing > 0 ? 1 - this.view.smoothing : 1;
    for (const [metric, value] of Object.entries(row)) {
      if (metric === "step" || metric === "epoch" || metric === "timestamp") continue;
      const kind = kindOf(metric);
      const chart = this.charts[kind];
      const datasets = chart ? chart.data.datasets.filter((d) => d.metric === metric) : [];
      if (!datasets.length) {
        // A metric the chart has not shown yet: re-request it, unless the server
        // left metrics out of the chart (the panels show those) or folds devices.
        const meta = this.meta[kind];
        const folded = kind === "gpu" && this.view.gpuAggregate && PER_DEVICE.test(metric);
        if (!chart || folded || !(meta?.metrics_omitted > 0)) this.markStale(kind);
        continue;
      }
      const x = this.xOf(row, kind);
      if (x === null || Number.isNaN(x)) continue;
      const y = num(value);
      for (const dataset of datasets) {
        if (dataset.role === "raw") {
          upsert(dataset.data, x, Number.isFinite(y) ? y : null, !byEpoch);
        } else if (dataset.role === "smoothed") {
          upsert(dataset.data, x, smoothNext(dataset, y, alpha), !byEpoch);
        }
        if (dataset.data.length > REFETCH_FACTOR * (this.meta[kind]?.max_points || 2000)) {
          this.markStale(kind);
        }
      }
      this.dirty.add(kind);
    }
    this.scheduleDraw();
  }

  markStale(kind) {
    this.stale.add(kind);
    this.refetch();
  }

  scheduleDraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      for (const kind of this.dirty) this.charts[kind]?.update("none");
      this.dirty.clear();
    });
  }
}

/** The EMA's next value (debiasing has faded by the time live points arrive). */
function smoothNext(dataset, y, alpha) {
  if (!Number.isFinite(y)) return null; // non-finite passes through as a gap
  const prev = dataset._ema;
  dataset._ema = prev === null || prev === undefined ? y : prev + alpha * (y - prev);
  return dataset._ema;
}

function lastFinite(points) {
  for (let i = points.length - 1; i >= 0; i--) {
    if (Number.isFinite(points[i].y)) return points[i].y;
  }
  return null;
}

