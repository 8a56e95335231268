// The compare page (…/dashboard/compare?jobs=a,b): one panel per metric the runs
// share, one line per run in the run's colour on every panel, group means with a
// min/max band, baseline deltas, and the config keys whose values differ.
// Every control's state lives in the URL, so a reload or a shared link restores it:
//   jobs=a,b  filter  smoothing  x  log=1  group_by  band=1  baseline  start_step  end_step
//   pin=<metric> (repeated)  log_metric=<metric> (repeated)  wide=<metric> (repeated)
// Panels come from the shared PanelGrid (panels.js); each panel asks
// GET /training/compare for its metric when it scrolls into view.

import { API, el, fmtNumber, getJSON, setBadge, whenChartReady } from "./common.js";
import { colorAt, withAlpha } from "./palette.js";
import { PanelGrid } from "./panels.js";

const $ = (id) => document.getElementById(id);
const X_MODES = ["step", "epoch", "relative_time", "time"];
const MAX_JOBS = 50;
const PANEL_POINTS = [200, 1500]; // points per line: about one per pixel, within these
const PARALLEL = 6; // job reads at once
const LEGEND_LIMIT = 10; // a legend under each panel up to this many runs (the run list has them all)

// --------------------------------------------------------------------------- state

/** The page state from a query string (unknown or bad values fall back to defaults). */
export function readState(search) {
  const params = new URLSearchParams(search);
  const jobs = [...new Set((params.get("jobs") || "").split(",").map((id) => id.trim()).filter(Boolean))];
  const smoothing = Number(params.get("smoothing"));
  const step = (name) => (/^\d{1,15}$/.test(params.get(name) || "") ? Number(params.get(name)) : null);
  return {
    jobs,
    filter: params.get("filter") || "",
    smoothing: Number.isFinite(smoothing) ? Math.min(0.99, Math.max(0, smoothing)) : 0,
    x: X_MODES.includes(params.get("x")) ? params.get("x") : "step",
    log: params.get("log") === "1",
    groupBy: params.get("group_by") || "",
    band: params.get("band") === "1",
    baseline: jobs.includes(params.get("baseline")) ? params.get("baseline") : "",
    startStep: step("start_step"),
    endStep: step("end_step"),
    pinned: params.getAll("pin"),
    logMetrics: params.getAll("log_metric"),
    wide: params.getAll("wide"),
  };
}

/** The query string of a state (ids joined with plain commas, the rest URL-encoded). */
export function writeQuery(state) {
  const params = new URLSearchParams();
  if (state.filter) params.set("filter", state.filter);
  if (state.smoothing > 0) params.set("smoothing", String(state.smoothing));
  if (state.x !== "step") params.set("x", state.x);
  if (state.log) params.set("log", "1");
  if (state.groupBy) params.set("group_by", state.groupBy);
  if (state.band) params.set("band", "1");
  if (state.baseline) params.set("baseline", state.baseline);
  if (state.startStep !== null) params.set("start_step", String(state.startStep));
  if (state.endStep !== null) params.set("end_step", String(state.endStep));
  for (const name of state.pinned) params.append("pin", name);
  if (!state.log) for (const name of state.logMetrics) params.append("log_metric", name);
  for (const name of state.wide) params.append("wide", name);
  const jobs = state.jobs.map(encodeURIComponent).join(",");
  const rest = params.toString();
  return `?jobs=${jobs}${rest ? `&${rest}` : ""}`;
}

const state = readState(window.location.search);

function saveState() {
  const query = writeQuery(state);
  if (query !== window.location.search) window.history.replaceState(null, "", query);
}

// --------------------------------------------------------------------------- config

/** A config flattened to dotted paths -> text (strings as they are, else JSON). */
export function flatten(config, prefix = "", out = new Map()) {
  for (const [key, value] of Object.entries(config || {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
      flatten(value, path, out);
    } else {
      out.set(path, typeof value === "string" ? value : JSON.stringify(value));
    }
  }
  return out;
}

/** The config paths whose values differ between jobs (a missing key differs too), sorted. */
export function differingKeys(flats) {
  const keys = new Set();
  for (const flat of flats) for (const key of flat.keys()) keys.add(key);
  return [...keys]
    .filter((key) => new Set(flats.map((flat) => (flat.has(key) ? flat.get(key) : undefined))).size > 1)
    .sort();
}

// --------------------------------------------------------------------------- grid

/** The panel grid with compare's touches: runs fade under group means, baseline deltas. */
class CompareGrid extends PanelGrid {
  constructor(container, options) {
    super(container, options);
    this.metas = new Map(); // metric -> meta of its last compare answer
    this.jobs = options.jobs; // [{id, label}], in colour order
  }

  datasets(lines) {
    const sets = super.datasets(lines);
    if (!this.view.groupBy) return sets;
    const runs = new Set(this.jobs.map((job) => job.id));
    for (const set of sets) {
      if (!runs.has(set._key) || set._role.startsWith("band")) continue;
      const color = colorAt(this.jobs.findIndex((job) => job.id === set._key));
      set.borderColor = withAlpha(color, 0.35);
      set.borderWidth = 1;
    }
    for (const set of sets) if (!runs.has(set._key) && set._role === "raw") set.borderWidth = 2.5; // means
    return sets;
  }

  draw(panel, lines, view) {
    super.draw(panel, lines, view);
    this.showDeltas(panel, view);
  }

  /** Under a panel: each run's last and best against the baseline's, in %. */
  showDeltas(panel, view) {
    panel.deltas?.remove();
    panel.deltas = null;
    const meta = this.metas.get(panel.name);
    if (!view.baseline || !meta || !meta.baseline) return;
    const labels = new Map(this.jobs.map((job, i) => [job.id, { label: job.label, color: colorAt(i) }]));
    const hasBest = meta.jobs.some((item) => item.best !== null);
    const direction = hasBest ? bestDirection(panel.name) : null;
    const rows = meta.jobs.map((item) => {
      const run = labels.get(item.job_id) || { label: item.job_id, color: "" };
      const isBase = item.job_id === meta.baseline;
      const cells = [
        el("td", { class: "run", title: run.label }, swatch(run.color), run.label),
        el("td", { class: "num" }, fmtNumber(item.last)),
        deltaCell(isBase ? null : item.delta_pct.last, direction),
      ];
      if (hasBest) {
        cells.push(el("td", { class: "num" }, item.best === null ? "—" : fmtNumber(item.best)));
        cells.push(deltaCell(isBase ? null : item.delta_pct.best, direction));
      }
      return el("tr", { class: isBase ? "is-baseline" : null }, cells);
    });
    const heads = hasBest ? ["run", "last", "Δ", "best", "Δ"] : ["run", "last", "Δ"];
    panel.deltas = el(
      "div",
      { class: "panel-deltas" },
      el(
        "table",
        { class: "deltas" },
        el("thead", {}, el("tr", {}, ...heads.map((text) => el("th", {}, text)))),
        el("tbody", {}, rows),
      ),
    );
    panel.node.append(panel.deltas);
  }
}

/** A colour chip (set through CSSOM: the page's CSP allows no inline style attributes). */
function swatch(color) {
  const node = el("span", { class: "swatch", "aria-hidden": "true" });
  node.style.backgroundColor = color;
  return node;
}

function bestDirection(metric) {
  if (metric.includes("loss")) return "min";
  return ["accuracy", "f1", "precision", "recall", "auc"].some((t) => metric.includes(t)) ? "max" : null;
}

function deltaCell(delta, direction) {
  if (delta === null || delta === undefined) return el("td", { class: "num muted" }, "—");
  const better = direction === null || delta === 0 ? "" : (delta < 0) === (direction === "min") ? "better" : "worse";
  const sign = delta > 0 ? "+" : "";
  return el("td", { class: `num delta ${better}` }, `${sign}${fmtNumber(delta, 3)}%`);
}

/** The compare query of one metric under a view. */
function compareQuery(metric, view) {
  const [least, most] = PANEL_POINTS;
  const params = new URLSearchParams({
    jobs: state.jobs.join(","),
    metric,
    x: view.x,
    max_points: String(Math.min(most, Math.max(least, Math.round(view.width || 600)))),
  });
  if (view.startStep !== null) params.set("start_step", String(view.startStep));
  if (view.endStep !== null) params.set("end_step", String(view.endStep));
  if (view.smoothing > 0) {
    params.set("smooth", "true");
    params.set("smooth_factor", String(Number((1 - view.smoothing).toFixed(4))));
  }
  if (view.groupBy) params.set("group_by", view.groupBy);
  if (view.band) params.set("band", "minmax");
  if (view.baseline) params.set("baseline", view.baseline);
  return params;
}

/** A compare answer as the grid's lines: one per run (key: job id), one per group. */
function linesOf(body) {
  const lines = new Map();
  const groups = body.meta.groups || [];
  for (const dataset of body.data.data.datasets) {
    const isRun = dataset.job_id !== undefined;
    const key = isRun ? dataset.job_id : `group:${JSON.stringify(dataset.group)}`;
    let line = lines.get(key);
    if (!line) {
      const position = isRun
        ? state.jobs.indexOf(dataset.job_id)
        : state.jobs.length + groups.findIndex((g) => g.group === dataset.group);
      line = { key, label: dataset.label, color: colorAt(position), x: [], y: [] };
      lines.set(key, line);
    }
    const ys = dataset.data.map((point) => point.y);
    if (dataset.role === "raw" || dataset.role === "mean") {
      line.label = dataset.label;
      line.x = dataset.data.map((point) => point.x);
      line.y = ys;
    } else if (dataset.role === "smoothed") line.smoothed = ys;
    else if (dataset.role === "band_min") line.min = ys;
    else if (dataset.role === "band_max") line.max = ys;
  }
  return [...lines.values()];
}

async function fetchSeries(names, view) {
  const result = new Map();
  await Promise.all(
    names.map(async (name) => {
      const body = await getJSON(`/training/compare?${compareQuery(name, view)}`);
      grid.metas.set(name, body.meta);
      result.set(name, linesOf(body));
    }),
  );
  return result;
}

// --------------------------------------------------------------------------- page

let grid = null;

function viewOf() {
  return {
    x: state.x,
    smoothing: state.smoothing,
    startStep: state.startStep,
    endStep: state.endStep,
    groupBy: state.groupBy,
    band: state.band,
    baseline: state.baseline,
  };
}

/** Zoom every panel to a step range (null, null: the whole runs). */
function zoom(startStep, endStep) {
  state.startStep = startStep;
  state.endStep = endStep;
  showZoom();
  saveState();
  grid.setView(viewOf());
}

function showZoom() {
  const button = $("reset-zoom");
  const zoomed = state.startStep !== null || state.endStep !== null;
  button.hidden = !zoomed;
  button.textContent = zoomed ? `steps ${state.startStep ?? 0}–${state.endStep ?? "end"} ✕` : "";
}

function fail(message) {
  const box = $("compare-error");
  box.replaceChildren(message, " ", el("a", { href: `${API}/dashboard` }, "Back to the job list"));
  box.hidden = false;
}

async function readJobs(ids) {
  const jobs = new Array(ids.length);
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const i = next++;
      jobs[i] = await getJSON(`/training/jobs/${encodeURIComponent(ids[i])}`).then((body) => body.data);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, ids.length) }, worker));
  return jobs;
}

function labelsOf(jobs) {
  const counts = new Map();
  for (const job of jobs) counts.set(job.name, (counts.get(job.name) || 0) + 1);
  return jobs.map((job) => (counts.get(job.name) > 1 ? `${job.name} (${job.id})` : job.name));
}

function renderRuns(jobs, labels) {
  $("run-count").textContent = `${jobs.length} runs`;
  $("run-list").replaceChildren(
    ...jobs.map((job, i) => {
      const others = state.jobs.filter((id) => id !== job.id);
      const remove =
        others.length >= 2
          ? el("a", { class: "run-remove", href: writeQuery({ ...state, jobs: others, baseline: state.baseline === job.id ? "" : state.baseline }), title: "Remove from the comparison", "aria-label": `remove ${labels[i]}` }, "×")
          : null;
      const badge = el("span", {});
      setBadge(badge, job.status);
      return el(
        "li",
        { class: "run", dataset: { job: job.id } },
        swatch(colorAt(i)),
        el("a", { href: `${API}/dashboard/job/${encodeURIComponent(job.id)}` }, labels[i]),
        el("span", { class: "muted job-id" }, job.id),
        badge,
        job.id === state.baseline ? el("span", { class: "baseline-mark" }, "baseline") : null,
        remove,
      );
    }),
  );
}

function renderConfigDiff(jobs, labels, keys, flats) {
  $("config-diff-count").textContent = keys.length ? `${keys.length} keys` : "";
  $("config-same").hidden = keys.length > 0;
  const table = $("config-diff");
  table.hidden = !keys.length;
  if (!keys.length) return;
  const head = el(
    "tr",
    {},
    el("th", {}, "key"),
    ...jobs.map((job, i) =>
      el("th", {}, swatch(colorAt(i)), labels[i]),
    ),
  );
  const rows = keys.map((key) =>
    el(
      "tr",
      { dataset: { key } },
      el("th", { scope: "row" }, key),
      ...flats.map((flat) => (flat.has(key) ? el("td", {}, flat.get(key)) : el("td", { class: "muted" }, "—"))),
    ),
  );
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
}

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, text]) => el("option", { value: v }, text)));
  select.value = options.some(([v]) => v === value) ? value : "";
}

function setupControls(jobs, labels, keys) {
  const form = $("compare-controls");
  const groupOptions = [["", "none"], ["tag", "tag"], ["model_name", "model name"], ["status", "status"]];
  for (const key of keys) groupOptions.push([`config.${key}`, `config.${key}`]);
  if (state.groupBy && !groupOptions.some(([v]) => v === state.groupBy)) {
    groupOptions.push([state.groupBy, state.groupBy]); // a shared link's key the runs all share
  }
  fillSelect(form.elements.group_by, groupOptions, state.groupBy);
  fillSelect(form.elements.baseline, [["", "none"], ...jobs.map((job, i) => [job.id, labels[i]])], state.baseline);
  form.elements.smoothing.value = String(state.smoothing);
  $("smoothing-value").textContent = String(state.smoothing);
  form.elements.x.value = state.x;
  form.elements.log.checked = state.log;
  form.elements.band.checked = state.band;
  form.addEventListener("submit", (event) => event.preventDefault());
  $("reset-zoom").addEventListener("click", () => zoom(null, null));
  showZoom();
  form.addEventListener("input", (event) => {
    if (event.target.name === "smoothing") $("smoothing-value").textContent = event.target.value;
  });
  form.addEventListener("change", (event) => {
    const name = event.target.name;
    if (name === "log") {
      state.log = form.elements.log.checked;
      setAllLog(state.log);
      saveState();
      return;
    }
    state.smoothing = Number(form.elements.smoothing.value);
    state.x = form.elements.x.value;
    state.groupBy = form.elements.group_by.value;
    state.band = form.elements.band.checked;
    state.baseline = form.elements.baseline.value;
    saveState();
    if (name === "baseline") renderRuns(jobs, labels);
    grid.setView(viewOf());
  });
}

/** Every panel's y axis logarithmic (or none). */
function setAllLog(on) {
  grid.logged = new Set(on ? grid.names : []);
  for (const panel of grid.panels.values()) {
    grid.showToggles(panel);
    if (panel.chart) {
      panel.chart.options.scales.y.type = on ? "logarithmic" : "linear";
      panel.chart.update("none");
    }
  }
  state.logMetrics = [];
}

function onGridState(panels) {
  state.pinned = panels.pinned;
  state.wide = panels.expanded;
  state.log = grid.names.length > 0 && grid.names.every((name) => grid.logged.has(name));
  state.logMetrics = state.log ? [] : panels.log;
  $("compare-controls").elements.log.checked = state.log;
  saveState();
}

async function main() {
  if (state.jobs.length < 2 || state.jobs.length > MAX_JOBS) {
    fail(`Pick 2 to ${MAX_JOBS} runs to compare (this link names ${state.jobs.length}).`);
    return;
  }
  let jobs;
  try {
    jobs = await readJobs(state.jobs);
  } catch (error) {
    fail(error.message);
    return;
  }
  const labels = labelsOf(jobs);
  const flats = jobs.map((job) => flatten(job.config));
  const keys = differingKeys(flats);
  renderRuns(jobs, labels);
  renderConfigDiff(jobs, labels, keys, flats);
  setupControls(jobs, labels, keys);
  const shared = jobs
    .map((job) => new Set(job.metric_names || []))
    .reduce((common, names) => new Set([...common].filter((name) => names.has(name))));
  const names = [...shared];
  $("no-shared").hidden = names.length > 0;
  await whenChartReady();
  grid = new CompareGrid($("metric-panels"), {
    names,
    jobs: jobs.map((job, i) => ({ id: job.id, label: labels[i] })),
    fetchSeries,
    view: viewOf(),
    state: { pinned: state.pinned, log: state.log ? names : state.logMetrics, expanded: state.wide },
    onStateChange: onGridState,
    fileName: (name, ext) => `compare-${name.replace(/[^\w.-]+/g, "_")}.${ext}`,
    legend: jobs.length <= LEGEND_LIMIT,
    onZoom: zoom,
  });
  grid.setFilter(state.filter);
  grid.input.addEventListener("input", () => {
    state.filter = grid.input.value;
    saveState();
  });
  window.trainvis = { grid, state };
}

main();
