// The job page: header, four live charts, view controls, SSE subscription.

import {
  API,
  debounce,
  el,
  fmtDuration,
  fmtNumber,
  getJSON,
  num,
  setBadge,
  setProgress,
  throttle,
} from "./common.js";
import { eventColor } from "./annotations.js";
import { JobCharts, KINDS } from "./charts.js";
import { PanelGrid } from "./panels.js";

const $ = (id) => document.getElementById(id);
const jobId = decodeURIComponent(window.location.pathname.split("/").filter(Boolean).pop());
const base = `/training/${encodeURIComponent(jobId)}`;
let charts = null;
let source = null;
let grid = null; // the metric panels
const PANEL_POINTS = [200, 1500]; // points per panel line: about one per pixel, within these
const ROW_KEYS = new Set(["step", "epoch", "timestamp"]);
const panelStateKey = `trainvis:panels:${jobId}`;
const gpuAggregateKey = `trainvis:gpu-aggregate:${jobId}`;

function renderJob(job) {
  document.title = `${job.name} — trainvis`;
  $("job-name").textContent = job.name;
  setBadge($("status-badge"), job.status);
  $("job-model").textContent = job.model_name || "—";
  $("job-step").textContent =
    job.total_steps ? `${job.current_step ?? 0} / ${job.total_steps}` : String(job.current_step ?? "—");
  $("job-epoch").textContent =
    job.current_epoch === null ? "—" : fmtNumber(job.current_epoch, 3) +
      (job.total_epochs ? ` / ${job.total_epochs}` : "");
  $("job-eta").textContent = job.status === "running" ? fmtDuration(job.eta_seconds) : "—";
  $("job-points").textContent = (job.point_count ?? 0).toLocaleString();
  setProgress($("job-progress"), job.progress);
  $("job-message").textContent = job.message || "";
  $("job-tags").replaceChildren(...(job.tags || []).map((tag) => el("span", { class: "tag" }, tag)));
  $("job-config").textContent = JSON.stringify(job.config ?? {}, null, 2);
  const devices = new Set();
  for (const name of job.metric_names || []) {
    const match = /^gpu(\d+)\./.exec(name);
    if (match) devices.add(match[1]);
  }
  $("gpu-aggregate").closest("label").hidden = devices.size < 2;
}

const EVENT_LIMIT = 200;
const listed = new Set(); // ids of the events in the list

/** One list entry: severity, kind, metric, step, message, time (all as text). */
function eventItem(event) {
  const severity = el("span", { class: `sev sev-${event.severity}` }, event.severity);
  severity.style.borderColor = eventColor(event);
  return el(
    "li",
    { class: "event", dataset: { eventId: String(event.id), kind: event.kind, step: String(event.step) } },
    severity,
    el("span", { class: "event-kind" }, event.kind.replace("_", " ")),
    el("span", { class: "muted" }, `step ${event.step}`),
    event.metric ? el("code", {}, event.metric) : null,
    el("span", { class: "event-message" }, event.message),
    el("time", { class: "muted", datetime: event.timestamp }, new Date(event.timestamp).toLocaleString()),
  );
}

function showEventCount() {
  $("events-count").textContent = listed.size ? `(${listed.size})` : "";
  $("no-events").hidden = listed.size > 0;
}

/** Add events to the list (newest on top) and to the charts; known ids are skipped. */
function addEvents(events) {
  const list = $("events-list");
  for (const event of [...events].sort((a, b) => a.id - b.id)) {
    charts.addEvent(event);
    if (listed.has(event.id)) continue;
    listed.add(event.id);
    list.prepend(eventItem(event));
  }
  showEventCount();
}

async function loadEvents() {
  try {
    const body = await getJSON(`${base}/events?limit=${EVENT_LIMIT}`);
    addEvents(body.data);
  } catch (_) {
    /* shown again on the next reconnect */
  }
}

const refreshJob = throttle(async () => {
  try {
    renderJob((await getJSON(`/training/jobs/${encodeURIComponent(jobId)}`)).data);
  } catch (_) {
    /* the stream's snapshot will bring it up to date */
  }
}, 2000);

function connect() {
  source = new EventSource(`${API}${base}/stream`);
  let opened = false;
  source.onopen = () => {
    $("live-state").textContent = "● live";
    if (opened) loadEvents(); // alerts are not replayed on reconnect: fetch what was missed
    opened = true;
  };
  source.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "snapshot") renderJob(data.job);
  };
  source.addEventListener("metrics", (event) => {
    const row = JSON.parse(event.data);
    charts.addRow(row);
    feedPanels(row);
    $("job-step").textContent = String(row.step);
    refreshJob();
  });
  source.addEventListener("status", (event) => {
    const change = JSON.parse(event.data);
    setBadge($("status-badge"), change.status);
    $("job-message").textContent = change.message || "";
    refreshJob();
  });
  source.addEventListener("alert", (event) => {
    addEvents([JSON.parse(event.data)]);
    refreshJob();
  });
  source.addEventListener("deleted", () => {
    source.close();
    $("live-state").textContent = "this job was deleted";
    setBadge($("status-badge"), "deleted");
  });
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) $("live-state").textContent = "reconnecting…";
  };
}

function readStep(input) {
  const value = input.value.trim();
  if (value === "") return null;
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

/** The panels' series request: compact arrays of `names` in the page's view. */
async function fetchPanelSeries(names, view) {
  const [least, most] = PANEL_POINTS;
  const points = Math.min(most, Math.max(least, Math.round(view.width || 600)));
  const q = new URLSearchParams({ metrics: names.join(","), x: view.x, max_points: String(points) });
  if (view.smoothing > 0) {
    q.set("smooth", "true");
    q.set("smooth_factor", String(Number((1 - view.smoothing).toFixed(4))));
  }
  if (view.startStep !== null) q.set("start_step", String(view.startStep));
  if (view.endStep !== null) q.set("end_step", String(view.endStep));
  const body = await getJSON(`${base}/series?${q}`);
  const data = new Map(Object.entries(body.data)); // metric names are user data: a Map
  const lines = new Map();
  for (const name of names) {
    const s = data.get(name);
    if (s) lines.set(name, [{ key: "value", label: name, x: s.x, y: s.y, smoothed: s.smoothed }]);
  }
  return lines;
}

function loadPanelState() {
  try {
    return JSON.parse(localStorage.getItem(panelStateKey) || "{}") || {};
  } catch (_) {
    return {};
  }
}

function panelView() {
  const { x, smoothing, startStep, endStep } = charts.view;
  return { x, smoothing, startStep, endStep };
}

/** Create the metric panels (first load) or give them the page's current view. */
function syncPanels(job) {
  if (!grid) {
    grid = new PanelGrid($("metric-panels"), {
      names: job.metric_names || [],
      fetchSeries: fetchPanelSeries,
      view: panelView(),
      state: loadPanelState(),
      onStateChange: (state) => localStorage.setItem(panelStateKey, JSON.stringify(state)),
      csvUrl: (name) =>
        `${API}${base}/metrics/history?${new URLSearchParams({ metrics: name, format: "csv" })}`,
      fileName: (name, ext) => `${jobId}-${name.replace(/[^\w.-]+/g, "_")}.${ext}`,
      onZoom: zoomTo,
    });
    window.trainvis.panels = grid;
    if (window.location.hash === "#metrics") $("metrics").scrollIntoView();
    return;
  }
  grid.addNames(job.metric_names || []);
  const view = panelView();
  if (JSON.stringify(view) !== JSON.stringify(grid.view)) grid.setView(view);
}

/** A live row's values to the panels (x on the page's axis). */
function feedPanels(row) {
  if (!grid) return;
  const x = charts.xOf(row, "loss");
  for (const [name, value] of Object.entries(row)) {
    if (!ROW_KEYS.has(name)) grid.append(name, "value", { x, y: num(value), step: row.step });
  }
}

async function reload() {
  const job = (await getJSON(`/training/jobs/${encodeURIComponent(jobId)}`)).data;
  renderJob(job);
  const loading = charts.load(job.current_step); // the four requests leave first
  syncPanels(job);
  await loading;
}

function zoomTo(start, end) {
  $("start-step").value = start === null ? "" : String(start);
  $("end-step").value = end === null ? "" : String(end);
  charts.view.startStep = start;
  charts.view.endStep = end;
  reload();
}

function wireControls() {
  const smoothing = $("smoothing");
  const applySmoothing = debounce(() => {
    charts.view.smoothing = Number(smoothing.value);
    reload();
  }, 200);
  smoothing.addEventListener("input", () => {
    $("smoothing-value").textContent = Number(smoothing.value).toFixed(2);
    applySmoothing();
  });
  $("x-axis").addEventListener("change", (event) => {
    charts.view.x = event.target.value;
    reload();
  });
  $("log-scale").addEventListener("change", (event) => {
    charts.view.logScale = event.target.checked;
    reload();
  });
  $("chart-controls").addEventListener("submit", (event) => {
    event.preventDefault();
    let start = readStep($("start-step"));
    let end = readStep($("end-step"));
    if (start !== null && end !== null && start > end) [start, end] = [end, start];
    zoomTo(start, end);
  });
  $("reset-zoom").addEventListener("click", () => zoomTo(null, null));
  $("gpu-aggregate").addEventListener("change", (event) => {
    charts.view.gpuAggregate = event.target.checked;
    localStorage.setItem(gpuAggregateKey, event.target.checked ? "1" : "0");
    charts.loadOne("gpu").catch(() => charts.markStale("gpu"));
  });
  for (const kind of KINDS) wireDragZoom(kind);
}

/** Drag across a chart (x = step) to zoom to that step range at full resolution. */
function wireDragZoom(kind) {
  const canvas = document.querySelector(`canvas[data-chart="${kind}"]`);
  const box = canvas.parentElement;
  const band = el("div", { class: "drag-band", hidden: true });
  box.append(band);
  let startX = null;
  canvas.addEventListener("mousedown", (event) => {
    if (charts.view.x !== "step" || event.button !== 0) return;
    startX = event.offsetX;
    band.hidden = false;
    band.style.left = `${startX}px`;
    band.style.width = "0px";
  });
  canvas.addEventListener("mousemove", (event) => {
    if (startX === null) return;
    band.style.left = `${Math.min(startX, event.offsetX)}px`;
    band.style.width = `${Math.abs(event.offsetX - startX)}px`;
  });
  const finish = (event) => {
    if (startX === null) return;
    const from = startX;
    startX = null;
    band.hidden = true;
    const chart = charts.charts[kind];
    if (!chart || Math.abs(event.offsetX - from) < 6) return;
    const scale = chart.scales.x;
    const a = scale.getValueForPixel(Math.min(from, event.offsetX));
    const b = scale.getValueForPixel(Math.max(from, event.offsetX));
    zoomTo(Math.max(0, Math.floor(a)), Math.max(0, Math.ceil(b)));
  };
  canvas.addEventListener("mouseup", finish);
  canvas.addEventListener("mouseleave", finish);
}

async function main() {
  $("csv-link").href = `${API}${base}/metrics/history?format=csv`;
  $("csv-link").setAttribute("download", `${jobId}.csv`);
  const canvases = {};
  const legends = {};
  for (const kind of KINDS) {
    canvases[kind] = document.querySelector(`canvas[data-chart="${kind}"]`);
    legends[kind] = document.querySelector(`[data-legend="${kind}"]`);
  }
  charts = new JobCharts(jobId, canvases, { legends });
  charts.view.gpuAggregate = localStorage.getItem(gpuAggregateKey) === "1";
  $("gpu-aggregate").checked = charts.view.gpuAggregate;
  window.trainvis = { charts };
  connect(); // first: rows stored while the charts load are buffered, not lost
  wireControls();
  try {
    await Promise.all([reload(), loadEvents()]);
  } catch (error) {
    $("live-state").textContent = `could not load: ${error.message}`;
  }
  window.trainvisReadyAt = performance.now();
  document.body.dataset.ready = "1";
}

main();
