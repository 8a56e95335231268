// The job list as a runs table: column picker, server-side sort by clicking a
// header, filters (status, tag, text, config values), row picks for compare,
// live refresh by polling; the whole view state lives in the URL.

import {
  API,
  debounce,
  el,
  fmtAgo,
  fmtDuration,
  fmtNumber,
  getJSON,
  lossKey,
  setBadge,
  setProgress,
} from "./common.js";
import { Compare } from "./compare.js";
import {
  DEFAULT_SORT,
  PAGE_SIZE,
  STATS,
  configText,
  durationSeconds,
  flattenConfig,
  listQuery,
  nextSort,
  parseColumn,
  readState,
  statsMap,
  writeState,
} from "./runstable.js";
import { Choices } from "./runpicker.js";
import { loadSparkline } from "./sparkline.js";

const POLL_MS = 2000;
const rows = new Map(); // job id -> { tr, cells: Map(column key -> node), job, sparkStep }
const picked = new Set();
const choices = new Choices(toggleColumn);
let state = readState(location.search);
let compare = null;
let pollTimer = null;
let generation = 0;
let total = 0;
let compareShown = false; // the compare chart has been given the URL's picks

function jobHref(id) {
  return `${API}/dashboard/job/${encodeURIComponent(id)}`;
}

function columns() {
  return state.cols.map(parseColumn).filter(Boolean);
}

/** Record the view in the URL (replace: typing in a filter is not history). */
function saveState() {
  const query = writeState(state);
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  updateCompareLink();
}

// ------------------------------------------------------------------ table

function renderHead() {
  const [sortKey, descending] = state.sort.startsWith("-")
    ? [state.sort.slice(1), true]
    : [state.sort, false];
  const header = (label, sort, cls) => {
    if (!sort) return el("th", { class: cls }, label);
    const active = sort === sortKey;
    const arrow = active ? (descending ? " ▼" : " ▲") : "";
    const button = el("button", { type: "button", class: "sort-button" }, label, arrow);
    return el(
      "th",
      {
        class: `${cls || ""} sortable`,
        dataset: { sort },
        "aria-sort": active ? (descending ? "descending" : "ascending") : "none",
        onclick: () => setSort(sort),
      },
      button,
    );
  };
  const cells = [el("th", { class: "pick", title: "select to compare" }, "⇄"), header("Name", "name", "name")];
  for (const column of columns()) {
    const th = header(column.label, column.sort, column.kind === "fixed" ? "" : "custom");
    th.dataset.col = column.key;
    th.title = column.key;
    cells.push(th);
  }
  document.getElementById("job-head").replaceChildren(el("tr", {}, ...cells));
}

function setSort(key) {
  state.sort = nextSort(state.sort, key);
  state.page = 1;
  saveState();
  renderHead();
  refresh().then(schedule);
}

function buildRow(job) {
  const pick = el("input", { type: "checkbox", "aria-label": "compare", class: "pick-box" });
  pick.checked = picked.has(job.id);
  pick.addEventListener("change", () => {
    if (pick.checked) picked.add(job.id);
    else picked.delete(job.id);
    state.pick = [...picked];
    saveState();
    compare.setJobs([...picked].map((id) => rows.get(id)?.job).filter(Boolean));
  });
  const cells = new Map([
    ["link", el("a", { href: jobHref(job.id), class: "job-link" })],
    ["id", el("span", { class: "muted job-id" })],
    ["alerts", el("span", { class: "alert-badge", hidden: true })],
  ]);
  const tds = columns().map((column) => {
    const td = el("td", { class: column.cls, dataset: { col: column.key } });
    if (column.key === "status") td.append(cells.set("badge", el("span", { class: "badge" })).get("badge"));
    if (column.key === "progress") {
      cells.set("bar", el("div", { class: "bar" }));
      cells.set("pct", el("span", { class: "muted pct" }));
      td.append(el("div", { class: "progress" }, cells.get("bar")), cells.get("pct"));
    }
    if (column.key === "spark") {
      cells.set("spark-canvas", el("canvas", { class: "spark", width: 120, height: 28 }));
      td.append(cells.get("spark-canvas"));
    }
    cells.set(column.key, td);
    return td;
  });
  const name = el("td", { class: "name" }, cells.get("link"), " ", cells.get("alerts"), el("br"), cells.get("id"));
  const tr = el("tr", { dataset: { jobId: job.id } }, el("td", { class: "pick" }, pick), name, ...tds);
  return { tr, cells, job, sparkStep: null };
}

function updateRow(entry, job) {
  const { cells } = entry;
  entry.job = job;
  cells.get("link").textContent = job.name;
  cells.get("id").textContent = job.id;
  showAlerts(cells.get("alerts"), job.alerts);
  const config = flattenConfig(job.config);
  const stats = statsMap(job);
  for (const column of columns()) fillCell(entry, column, job, config, stats);
}

function fillCell(entry, column, job, config, stats) {
  const td = entry.cells.get(column.key);
  if (column.kind === "config") {
    td.textContent = config.has(column.path) ? configText(config.get(column.path)) : "—";
    return;
  }
  if (column.kind === "metric") {
    const item = stats.get(column.metric);
    const value = item ? item[column.stat] : null;
    td.textContent = fmtNumber(value);
    td.title = item && column.stat === "best" && item.best_step !== null ? `step ${item.best_step}` : "";
    return;
  }
  const key = lossKey(job);
  const summary = job.summary || {};
  switch (column.key) {
    case "model":
      td.textContent = job.model_name || "—";
      break;
    case "status":
      setBadge(entry.cells.get("badge"), job.status);
      break;
    case "progress":
      setProgress(entry.cells.get("bar"), job.progress);
      entry.cells.get("pct").textContent =
        job.progress === null ? "" : `${Math.round(job.progress * 100)}%`;
      break;
    case "eta":
      td.textContent = job.status === "running" ? fmtDuration(job.eta_seconds) : "—";
      break;
    case "latest":
      td.textContent = key ? fmtNumber(new Map(Object.entries(summary.last || {})).get(key)) : "—";
      break;
    case "best": {
      const best = key ? new Map(Object.entries(summary.best || {})).get(key) : null;
      td.textContent = best ? `${fmtNumber(best.value)} @${best.step}` : "—";
      break;
    }
    case "spark":
      if (key && entry.sparkStep !== job.current_step) {
        entry.sparkStep = job.current_step;
        loadSparkline(entry.cells.get("spark-canvas"), job.id, key).catch(() => {
          entry.sparkStep = null; // retry on the next poll
        });
      }
      break;
    case "tags":
      td.replaceChildren(...job.tags.map((tag) => el("span", { class: "tag" }, tag)));
      break;
    case "duration":
      td.textContent = fmtDuration(durationSeconds(job));
      break;
    case "created_at":
      td.textContent = fmtAgo(job.created_at);
      break;
    case "updated_at":
      td.textContent = fmtAgo(job.updated_at);
      break;
    default:
      break;
  }
}

/** The badge of a job's warnings and critical alerts (hidden when there are none). */
function showAlerts(badge, alerts) {
  const critical = alerts?.critical || 0;
  const count = critical + (alerts?.warning || 0);
  badge.hidden = count === 0;
  badge.textContent = count ? `⚠ ${count}` : "";
  badge.dataset.count = String(count);
  badge.classList.toggle("critical", critical > 0);
  badge.title = count ? `${count} alert${count > 1 ? "s" : ""} (${critical} critical)` : "";
}

function renderCounts(counts, totals) {
  const box = document.getElementById("counts");
  box.replaceChildren(
    ...Object.entries(counts).map(([status, n]) =>
      el("div", { class: `count status-${status}`, dataset: { status } }, el("b", {}, n), status),
    ),
  );
  document.getElementById("totals").textContent =
    `${totals.jobs} jobs · ${totals.points.toLocaleString()} points`;
}

// ------------------------------------------------------------------ columns

function toggleColumn(key, on) {
  const without = state.cols.filter((other) => other !== key);
  state.cols = on ? [...without, key] : without;
  rebuild();
}

function addMetricColumn() {
  const name = document.getElementById("metric-name").value.trim();
  const stat = document.getElementById("metric-stat").value;
  if (!name || !STATS.includes(stat)) return;
  const key = `metric.${name}.${stat}`;
  if (!parseColumn(key) || state.cols.includes(key)) return;
  state.cols = [...state.cols, key];
  document.getElementById("metric-name").value = "";
  rebuild();
}

/** Columns changed: new header, rows built again, the API asked again. */
function rebuild() {
  saveState();
  for (const entry of rows.values()) entry.tr.remove();
  rows.clear();
  renderHead();
  choices.render(state.cols);
  refresh().then(schedule);
}

// ------------------------------------------------------------------ filters

function renderConfigFilters() {
  const chips = state.config.map(([path, value], index) =>
    el(
      "button",
      {
        type: "button",
        class: "chip",
        title: "remove this filter",
        dataset: { config: path },
        onclick: () => {
          state.config = state.config.filter((_, other) => other !== index);
          filtersChanged();
        },
      },
      `${path} = ${value} ×`,
    ),
  );
  document.getElementById("config-filters").replaceChildren(...chips);
}

function addConfigFilter() {
  const path = document.getElementById("config-key").value.trim();
  const value = document.getElementById("config-value").value;
  if (!path || /(^|\.)(\.|$)|["\\]/.test(path)) return;
  state.config = [...state.config, [path, value]];
  document.getElementById("config-value").value = "";
  filtersChanged();
}

function filtersChanged() {
  state.page = 1;
  renderConfigFilters();
  saveState();
  refresh().then(schedule);
}

function readFilterInputs() {
  state.status = document.getElementById("status-filter").value;
  state.tag = document.getElementById("tag-filter").value.trim();
  state.q = document.getElementById("text-filter").value.trim();
}

function showFilterInputs() {
  document.getElementById("status-filter").value = state.status;
  document.getElementById("tag-filter").value = state.tag;
  document.getElementById("text-filter").value = state.q;
  renderConfigFilters();
}

// ------------------------------------------------------------------ compare, pages

function updateCompareLink() {
  const link = document.getElementById("compare-link");
  const ids = [...picked];
  link.textContent = `Compare (${ids.length})`;
  const ready = ids.length >= 2;
  link.setAttribute("aria-disabled", String(!ready));
  link.classList.toggle("disabled", !ready);
  link.href = `${API}/dashboard/compare?jobs=${ids.map(encodeURIComponent).join(",")}`;
  // The quick one-metric overlay shows once two runs are picked; the link opens every metric.
  document.getElementById("compare").hidden = !ready;
}

function renderPager() {
  const first = total === 0 ? 0 : (state.page - 1) * PAGE_SIZE + 1;
  const last = Math.min(total, state.page * PAGE_SIZE);
  document.getElementById("page-info").textContent = `${first}–${last} of ${total}`;
  document.getElementById("page-prev").disabled = state.page <= 1;
  document.getElementById("page-next").disabled = last >= total;
}

function turnPage(delta) {
  state.page = Math.max(1, state.page + delta);
  saveState();
  refresh().then(schedule);
}

// ------------------------------------------------------------------ refresh

async function refresh() {
  const mine = ++generation;
  const status = document.getElementById("list-state");
  try {
    const [list, dash] = await Promise.all([
      getJSON(`/training/jobs?${listQuery(state)}`),
      getJSON("/dashboard?format=json"),
    ]);
    if (mine !== generation) return; // a newer refresh (filter change) owns the table
    renderCounts(dash.data.counts, dash.data.totals);
    if (choices.learn(list.data)) choices.render(state.cols);
    const seen = new Set();
    const ordered = list.data.map((job) => {
      seen.add(job.id);
      let entry = rows.get(job.id);
      if (!entry) {
        entry = buildRow(job);
        rows.set(job.id, entry);
      }
      updateRow(entry, job);
      return entry.tr;
    });
    for (const [id, entry] of rows) {
      if (!seen.has(id) && !picked.has(id)) rows.delete(id);
      else if (!seen.has(id)) entry.tr.remove();
    }
    document.getElementById("job-rows").replaceChildren(...ordered);
    document.getElementById("no-jobs").hidden = list.data.length > 0;
    total = list.meta.total;
    renderPager();
    status.textContent = `${list.meta.total} shown · live`;
    const pickedJobs = [...picked].map((id) => rows.get(id)?.job).filter(Boolean);
    if (!compareShown && pickedJobs.length) compare.setJobs(pickedJobs); // picks from the URL
    else compare.refreshJobs(pickedJobs);
    compareShown = true;
  } catch (error) {
    if (error.status === 422 && (state.sort !== DEFAULT_SORT || state.config.length)) {
      // a hand-edited or outdated link: say so and fall back to the default view
      state.sort = DEFAULT_SORT;
      state.config = [];
      renderConfigFilters();
      renderHead();
      saveState();
      await refresh();
      status.textContent = `${status.textContent} (the link's sort or filter was refused: ${error.message})`;
      return;
    }
    status.textContent = `offline (${error.message}); retrying…`;
  }
}

function schedule() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(async () => {
    await refresh();
    schedule();
  }, POLL_MS);
}

function main() {
  compare = new Compare(
    document.getElementById("compare-chart"),
    document.getElementById("compare-metric"),
    document.getElementById("compare-log"),
    document.getElementById("compare-picked"),
  );
  for (const id of state.pick) picked.add(id);
  showFilterInputs();
  const onFilter = debounce(() => {
    readFilterInputs();
    filtersChanged();
  }, 250);
  document.getElementById("status-filter").addEventListener("change", onFilter);
  document.getElementById("text-filter").addEventListener("input", onFilter);
  document.getElementById("tag-filter").addEventListener("input", onFilter);
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    onFilter();
  });
  document.getElementById("config-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    addConfigFilter();
  });
  document.getElementById("metric-column").addEventListener("submit", (event) => {
    event.preventDefault();
    addMetricColumn();
  });
  document.getElementById("page-prev").addEventListener("click", () => turnPage(-1));
  document.getElementById("page-next").addEventListener("click", () => turnPage(1));
  document.getElementById("compare-link").addEventListener("click", (event) => {
    if (picked.size < 2) event.preventDefault();
  });
  renderHead();
  choices.render(state.cols);
  updateCompareLink();
  refresh().then(() => {
    document.body.dataset.ready = "1";
    schedule();
  });
}

main();
