// The job list: filters, live refresh by polling, sparklines, picks for "compare runs".

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
import { loadSparkline } from "./sparkline.js";

const POLL_MS = 2000;
const rows = new Map(); // job id -> { tr, cells, job, sparkStep }
const picked = new Set();
let compare = null;
let pollTimer = null;
let generation = 0;

function jobHref(id) {
  return `${API}/dashboard/job/${encodeURIComponent(id)}`;
}

function buildRow(job) {
  const pick = el("input", { type: "checkbox", "aria-label": "compare", class: "pick-box" });
  pick.checked = picked.has(job.id);
  pick.addEventListener("change", () => {
    if (pick.checked) picked.add(job.id);
    else picked.delete(job.id);
    compare.setJobs([...picked].map((id) => rows.get(id)?.job).filter(Boolean));
  });
  const cells = {
    name: el("a", { href: jobHref(job.id), class: "job-link" }),
    id: el("span", { class: "muted job-id" }),
    alerts: el("span", { class: "alert-badge", hidden: true }),
    model: el("td", { class: "model" }),
    badge: el("span", { class: "badge" }),
    bar: el("div", { class: "bar" }),
    pct: el("span", { class: "muted pct" }),
    eta: el("td", { class: "eta" }),
    latest: el("td", { class: "num latest-loss" }),
    best: el("td", { class: "num best-loss" }),
    spark: el("canvas", { class: "spark", width: 120, height: 28 }),
    updated: el("td", { class: "muted updated" }),
  };
  const tr = el(
    "tr",
    { dataset: { jobId: job.id } },
    el("td", { class: "pick" }, pick),
    el("td", { class: "name" }, cells.name, " ", cells.alerts, el("br"), cells.id),
    cells.model,
    el("td", {}, cells.badge),
    el("td", { class: "progress-cell" }, el("div", { class: "progress" }, cells.bar), cells.pct),
    cells.eta,
    cells.latest,
    cells.best,
    el("td", {}, cells.spark),
    cells.updated,
  );
  return { tr, cells, job, sparkStep: null };
}

function updateRow(entry, job) {
  const { cells } = entry;
  entry.job = job;
  cells.name.textContent = job.name;
  cells.id.textContent = job.id;
  cells.model.textContent = job.model_name || "—";
  setBadge(cells.badge, job.status);
  setProgress(cells.bar, job.progress);
  cells.pct.textContent = job.progress === null ? "" : `${Math.round(job.progress * 100)}%`;
  cells.eta.textContent = job.status === "running" ? fmtDuration(job.eta_seconds) : "—";
  const key = lossKey(job);
  const summary = job.summary || {};
  cells.latest.textContent = key ? fmtNumber(summary.last[key]) : "—";
  const best = key && summary.best ? summary.best[key] : null;
  cells.best.textContent = best ? `${fmtNumber(best.value)} @${best.step}` : "—";
  cells.updated.textContent = fmtAgo(job.updated_at);
  showAlerts(cells.alerts, job.alerts);
  if (key && entry.sparkStep !== job.current_step) {
    entry.sparkStep = job.current_step;
    loadSparkline(cells.spark, job.id, key).catch(() => {
      entry.sparkStep = null; // retry on the next poll
    });
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

function filterQuery() {
  const query = new URLSearchParams({ limit: "200" });
  const status = document.getElementById("status-filter").value;
  const text = document.getElementById("text-filter").value.trim();
  if (status) query.set("status", status);
  if (text) query.set("q", text);
  return query;
}

async function refresh() {
  const mine = ++generation;
  const state = document.getElementById("list-state");
  try {
    const [list, dash] = await Promise.all([
      getJSON(`/training/jobs?${filterQuery()}`),
      getJSON("/dashboard?format=json"),
    ]);
    if (mine !== generation) return; // a newer refresh (filter change) owns the table
    renderCounts(dash.data.counts, dash.data.totals);
    const body = document.getElementById("job-rows");
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
    body.replaceChildren(...ordered);
    document.getElementById("no-jobs").hidden = list.data.length > 0;
    state.textContent = `${list.meta.total} shown · live`;
    compare.refreshJobs([...picked].map((id) => rows.get(id)?.job).filter(Boolean));
  } catch (error) {
    state.textContent = `offline (${error.message}); retrying…`;
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
  const onFilter = debounce(() => refresh().then(schedule), 250);
  document.getElementById("status-filter").addEventListener("change", onFilter);
  document.getElementById("text-filter").addEventListener("input", onFilter);
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    onFilter();
  });
  refresh().then(() => {
    document.body.dataset.ready = "1";
    schedule();
  });
}

main();
