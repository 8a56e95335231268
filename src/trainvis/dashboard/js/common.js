// Shared helpers of the dashboard pages. User data only ever reaches the DOM
// through textContent / attributes set by el(), never through innerHTML.

export const API = "/api/v1/visualization";

/** Create an element; string/number children become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** GET a JSON endpoint of the API; returns the parsed body, throws on HTTP errors. */
export async function getJSON(path, { signal } = {}) {
  const response = await fetch(API + path, { headers: { Accept: "application/json" }, signal });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error.message;
    } catch (_) {
      /* not JSON: keep the status line */
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

/** A metric value from a row or summary: "NaN"/"Infinity" strings become NaN/±Infinity. */
export function num(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return value;
  if (value === "NaN") return NaN;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  return null;
}

export function fmtNumber(value, digits = 4) {
  const v = num(value);
  if (v === null) return "—";
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export function fmtAgo(iso) {
  if (!iso) return "—";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(seconds)) return "—";
  if (seconds < 60) return "just now";
  return `${fmtDuration(seconds)} ago`;
}

/** The loss a job's summary shows: train loss, else val loss, else any *loss*. */
export function lossKey(job) {
  const last = (job.summary && job.summary.last) || {};
  if ("train_loss" in last) return "train_loss";
  if ("val_loss" in last) return "val_loss";
  return Object.keys(last).find((name) => name.includes("loss")) || null;
}

export function setBadge(node, status) {
  node.textContent = status;
  node.dataset.status = status;
  node.className = `badge status-${status}`;
}

export function setProgress(bar, progress) {
  const pct = progress === null || progress === undefined ? 0 : Math.max(0, Math.min(1, progress));
  bar.style.width = `${(pct * 100).toFixed(1)}%`;
  bar.title = progress === null || progress === undefined ? "unknown" : `${(pct * 100).toFixed(1)}%`;
}

/** Call fn at most once per `ms`, always with the latest arguments (trailing call kept). */
export function throttle(fn, ms) {
  let timer = null;
  let pending = null;
  return (...args) => {
    pending = args;
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      const call = pending;
      pending = null;
      fn(...call);
    }, ms);
  };
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Run `fn` once Chart.js (a deferred classic script) has loaded; its colours then
 * follow the page's theme (see applyChartTheme). */
export function whenChartReady() {
  if (window.Chart) return Promise.resolve(themed(window.Chart));
  return new Promise((resolve) => {
    window.addEventListener("DOMContentLoaded", () => resolve(themed(window.Chart)), { once: true });
  });
}

const DARK = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
let themeWatched = false;
let theme = null; // the colours last applied: {text, ink, grid}

/** Chart.js's default colours (tick labels, titles, legend text, grid lines) from
 * the CSS variables of style.css, so charts are readable in the light and the dark
 * theme. Charts created afterwards pick them up; charts already drawn are recoloured
 * where they still show the previous theme's colours (Chart.js copies the defaults
 * of scales into each chart when it is created). */
export function applyChartTheme(Chart) {
  const css = getComputedStyle(document.documentElement);
  const cssVar = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const next = {
    text: cssVar("--muted", "#6b7280"),
    ink: cssVar("--ink", "#111827"),
    grid: cssVar("--chart-grid", "rgba(0, 0, 0, 0.1)"),
  };
  Chart.defaults.color = next.text;
  Chart.defaults.borderColor = next.grid;
  Chart.defaults.plugins.title.color = next.ink;
  Chart.defaults.plugins.legend.labels.color = next.ink;
  if (theme) {
    for (const chart of Object.values(Chart.instances || {})) recolour(chart, theme, next);
  }
  theme = next;
}

function recolour(chart, previous, next) {
  const swap = (object, key, from, to) => {
    if (object && (object[key] === undefined || object[key] === from)) object[key] = to;
  };
  const options = chart.config.options;
  for (const scale of Object.values(options.scales || {})) {
    if (scale.grid) swap(scale.grid, "color", previous.grid, next.grid);
    if (scale.border) swap(scale.border, "color", previous.grid, next.grid);
    swap(scale.ticks, "color", previous.text, next.text);
    swap(scale.title, "color", previous.text, next.text);
  }
  swap(options.plugins?.legend?.labels, "color", previous.ink, next.ink);
  swap(options.plugins?.title, "color", previous.ink, next.ink);
  chart.update("none");
}

function themed(Chart) {
  if (!Chart) return Chart;
  applyChartTheme(Chart);
  if (DARK && !themeWatched) {
    themeWatched = true;
    DARK.addEventListener("change", () => applyChartTheme(Chart));
  }
  return Chart;
}

// Pages load Chart.js as a deferred script before their module: theme it now, so
// charts built without waiting for whenChartReady() are themed too.
themed(window.Chart);

/** Insert {x, y} keeping x sorted; with `replace`, an equal x replaces the point. */
export function upsert(points, x, y, replace) {
  const n = points.length;
  if (!n || points[n - 1].x < x || (!replace && points[n - 1].x === x)) {
    points.push({ x, y });
    return;
  }
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid].x < x) lo = mid + 1;
    else hi = mid;
  }
  if (replace && lo < n && points[lo].x === x) points[lo] = { x, y };
  else points.splice(lo, 0, { x, y });
}
