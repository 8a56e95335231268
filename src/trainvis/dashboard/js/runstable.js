// The runs table's columns and view state (issue 16). A column's key is the
// API's sort key where it has one (`name`, `status`, `progress`, `created_at`,
// `updated_at`, `config.<path>`, `metric.<name>.<stat>`); the view state lives
// in the URL. User-named keys (config paths, metric names) only go into Maps.

export const STATS = ["last", "min", "max", "best"];
export const PAGE_SIZE = 100;
export const DEFAULT_SORT = "-created_at";

/** The fixed columns besides the name: key -> { label, sort?, cls }. */
export const FIXED = new Map([
  ["model", { label: "Model", cls: "model" }],
  ["status", { label: "Status", sort: "status" }],
  ["progress", { label: "Progress", sort: "progress", cls: "progress-cell" }],
  ["eta", { label: "ETA", cls: "eta" }],
  ["latest", { label: "Latest loss", cls: "num latest-loss" }],
  ["best", { label: "Best loss", cls: "num best-loss" }],
  ["spark", { label: "Loss curve" }],
  ["tags", { label: "Tags", cls: "tags-cell" }],
  ["duration", { label: "Duration", cls: "num duration" }],
  ["created_at", { label: "Created", sort: "created_at", cls: "muted created" }],
  ["updated_at", { label: "Updated", sort: "updated_at", cls: "muted updated" }],
]);
export const DEFAULT_COLUMNS = ["model", "status", "progress", "eta", "latest", "best", "spark", "updated_at"];

/** What a column key shows: a fixed column, a config path or a metric statistic. */
export function parseColumn(key) {
  if (FIXED.has(key)) return { kind: "fixed", key, ...FIXED.get(key) };
  if (key.startsWith("config.") && key.length > 7) {
    const path = key.slice(7);
    return { kind: "config", key, path, label: path, sort: key, cls: "config-cell" };
  }
  const match = /^metric\.(.+)\.(last|min|max|best)$/.exec(key);
  if (match) {
    const [, metric, stat] = match;
    return { kind: "metric", key, metric, stat, label: `${metric} ${stat}`, sort: key, cls: "num" };
  }
  return null;
}

/** The view state from a query string (what a reload or a shared link restores). */
export function readState(search) {
  const params = new URLSearchParams(search);
  const cols = params.getAll("col").filter((key) => parseColumn(key) !== null);
  const config = [];
  for (const [key, value] of params) {
    if (key.startsWith("config.") && key.length > 7) config.push([key.slice(7), value]);
  }
  const page = Number.parseInt(params.get("page") || "1", 10);
  return {
    status: params.get("status") || "",
    tag: params.get("tag") || "",
    q: params.get("q") || "",
    sort: params.get("sort") || DEFAULT_SORT,
    cols: params.has("col") ? cols : [...DEFAULT_COLUMNS],
    config,
    pick: params.getAll("pick"),
    page: Number.isFinite(page) && page > 0 ? page : 1,
  };
}

/** The query string of a view state (defaults left out). */
export function writeState(state) {
  const params = new URLSearchParams();
  if (state.status) params.set("status", state.status);
  if (state.tag) params.set("tag", state.tag);
  if (state.q) params.set("q", state.q);
  for (const [path, value] of state.config) params.append(`config.${path}`, value);
  if (state.sort !== DEFAULT_SORT) params.set("sort", state.sort);
  const defaults = state.cols.length === DEFAULT_COLUMNS.length &&
    state.cols.every((key, index) => key === DEFAULT_COLUMNS[index]);
  if (!defaults) {
    if (state.cols.length === 0) params.append("col", "");
    for (const key of state.cols) params.append("col", key);
  }
  for (const id of state.pick) params.append("pick", id);
  if (state.page > 1) params.set("page", String(state.page));
  return params.toString();
}

/** The API query of a view state: filters, sort, page and the stats its columns need. */
export function listQuery(state) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String((state.page - 1) * PAGE_SIZE) });
  if (state.status) query.set("status", state.status);
  if (state.tag) query.set("tag", state.tag);
  if (state.q) query.set("q", state.q);
  for (const [path, value] of state.config) query.append(`config.${path}`, value);
  query.set("sort", state.sort);
  const metrics = new Set();
  for (const key of state.cols) {
    const column = parseColumn(key);
    if (column && column.kind === "metric") metrics.add(column.metric);
  }
  const sorted = parseColumn(state.sort.replace(/^-/, ""));
  if (sorted && sorted.kind === "metric") metrics.add(sorted.metric);
  if (metrics.size) query.set("stats", [...metrics].join(","));
  return query;
}

/** The next sort after a click on the header of `key`: the same key toggles direction. */
export function nextSort(current, key) {
  return current === key ? `-${key}` : key;
}

/** A config key the API can address (its dotted path splits back into the same keys). */
function addressable(key) {
  return key !== "" && !/[."\\\u0000-\u001f]/.test(key);
}

/** A job's config as a Map of dotted path -> leaf value (objects descended, arrays kept). */
export function flattenConfig(config, prefix = "", out = new Map()) {
  if (config === null || typeof config !== "object" || Array.isArray(config)) return out;
  for (const [key, value] of Object.entries(config)) {
    if (!addressable(key)) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    const nested = value !== null && typeof value === "object" && !Array.isArray(value);
    if (nested && Object.keys(value).length) flattenConfig(value, path, out);
    else out.set(path, value);
  }
  return out;
}

/** A config value as the API's filter compares it: strings bare, the rest as JSON. */
export function configText(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** A job's `stats` (present with `stats=`) as a Map of metric -> statistics. */
export function statsMap(job) {
  return new Map(Object.entries(job.stats || {}));
}

/** Seconds a job ran: start to finish, or to now while it runs; null before it starts. */
export function durationSeconds(job, now = Date.now()) {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return (end - Date.parse(job.started_at)) / 1000;
}
