// A grid of one chart per metric ("panels"), grouped by name prefix: a filter box
// (substring or /regex/), panels drawn only when scrolled into view (batched
// requests, at most MAX_IN_FLIGHT at once), live points appended in place, and per
// panel a log toggle, pin to top, full-width expand, CSV and PNG download.
// The job page draws one line per panel, the compare page one line per run.
//
//   const grid = new PanelGrid(container, {
//     names,                          // metric names (more via addNames)
//     fetchSeries: async (names, view) => Map<name, Line[]>,  // view has `width` (px) too
//     view: { x: "step", smoothing: 0, startStep: null, endStep: null },
//     state: { pinned: [], log: [], expanded: [] },   // restored view state
//     onStateChange: (state) => {},   // persist it (localStorage, URL)
//     csvUrl: (name) => url | null,   // server CSV; else the panel's data as CSV
//     fileName: (name, ext) => string,
//     legend: false,                  // a legend under each chart (compare)
//     onZoom: (startStep, endStep) => {}, // a drag across a panel (x = step)
//   });
//   Line = { key, label, color, x: [], y: [], smoothed?: [], min?: [], max?: [] }
//   grid.append(name, key, { x, y, step });  grid.setView(view);  grid.setFilter(text)
//
// Metric names are user data: they live in Maps and reach the DOM as text only.

import { el, upsert } from "./common.js";
import { colorAt, withAlpha } from "./palette.js";
import { applyTicks } from "./ticks.js";

export const MAX_IN_FLIGHT = 6;
export const BATCH = 8; // metrics per request
const REFETCH_FACTOR = 3; // refetch a panel once live points triple what it was sent
const RETRY_MS = 3000;
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/** The group of a metric: its name up to the first `/` or `.`, else "other". */
export function prefixOf(name) {
  const match = /[/.]/.exec(name);
  return match && match.index > 0 ? name.slice(0, match.index) : "other";
}

/** Group order: ungrouped names ("other") first, then by name, GPU readings last. */
export function compareGroups(a, b) {
  const rank = (prefix) => (prefix === "other" ? 0 : /^gpu\d*$/.test(prefix) ? 2 : 1);
  return rank(a) - rank(b) || collator.compare(a, b);
}

/** A filter from the box's text: substring (any case) or `/regex/`; a bad regex gives `error`. */
export function parseFilter(text) {
  const t = text.trim();
  if (!t) return { test: () => true, error: null };
  if (t.length >= 2 && t.startsWith("/") && t.endsWith("/")) {
    try {
      const re = new RegExp(t.slice(1, -1), "i");
      return { test: (name) => re.test(name), error: null };
    } catch (error) {
      return { test: () => true, error: `not a valid regular expression: ${error.message}` };
    }
  }
  const needle = t.toLowerCase();
  return { test: (name) => name.toLowerCase().includes(needle), error: null };
}

function download(href, name) {
  const link = el("a", { href, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
}

function csvField(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}


function points(xs, ys) {
  const out = new Array(xs.length);
  for (let i = 0; i < xs.length; i++) out[i] = { x: xs[i], y: ys[i] ?? null };
  return out;
}

function lastFinite(values) {
  for (let i = values.length - 1; i >= 0; i--) if (Number.isFinite(values[i])) return values[i];
  return null;
}

export class PanelGrid {
  constructor(container, options) {
    this.container = container;
    this.fetchSeries = options.fetchSeries;
    this.view = { x: "step", smoothing: 0, startStep: null, endStep: null, ...options.view };
    this.onStateChange = options.onStateChange || (() => {});
    this.csvUrl = options.csvUrl || (() => null);
    this.fileName = options.fileName || ((name, ext) => `${name.replace(/[^\w.-]+/g, "_")}.${ext}`);
    this.legend = Boolean(options.legend);
    this.onZoom = options.onZoom || null;
    const state = options.state || {};
    this.pinned = [...(state.pinned || [])]; // names, in pin order
    this.logged = new Set(state.log || []);
    this.expanded = new Set(state.expanded || []);
    this.panels = new Map(); // name -> panel
    this.groups = new Map(); // prefix -> {node, body, count, names}
    this.queue = new Set(); // panels waiting for a request
    this.generation = 0; // bumped by setView: older answers are dropped
    this.filter = parseFilter("");
    this.dirty = new Set();
    this.frame = 0;
    this.stats = { requests: 0, inFlight: 0, maxInFlight: 0 };
    this.build();
    this.observer = new IntersectionObserver((entries) => this.onIntersect(entries), {
      rootMargin: "150px 0px",
    });
    this.addNames(options.names || []);
  }

  build() {
    this.input = el("input", {
      type: "search",
      name: "metric-filter",
      placeholder: "Filter metrics: text or /regex/",
      "aria-label": "Filter metrics",
      autocomplete: "off",
      spellcheck: "false",
    });
    this.input.addEventListener("input", () => this.setFilter(this.input.value));
    this.count = el("span", { class: "muted filter-count" });
    this.error = el("span", { class: "filter-error", role: "alert", hidden: true });
    this.pinBox = el("div", { class: "panels" });
    this.pinSection = el(
      "section",
      { class: "panel-group pinned", dataset: { pinned: "" }, hidden: true },
      el("h3", { class: "group-title" }, "Pinned"),
      this.pinBox,
    );
    this.groupBox = el("div", { class: "panel-groups" });
    this.container.replaceChildren(
      el("div", { class: "panel-toolbar" }, this.input, this.count, this.error),
      this.pinSection,
      this.groupBox,
    );
  }

  /** Add panels for names not shown yet (new metrics of a live job). */
  addNames(names) {
    const fresh = [...new Set(names)].filter((name) => !this.panels.has(name));
    if (!fresh.length) return;
    const touched = new Set();
    for (const name of fresh) {
      const panel = this.makePanel(name);
      this.panels.set(name, panel);
      const group = this.group(prefixOf(name));
      group.names.push(name);
      touched.add(group);
    }
    for (const group of touched) {
      group.names.sort(collator.compare);
      this.layoutGroup(group);
    }
    this.layoutPins();
    this.applyFilter();
  }

  get names() {
    return [...this.panels.keys()];
  }

  group(prefix) {
    let group = this.groups.get(prefix);
    if (group) return group;
    const body = el("div", { class: "panels" });
    const count = el("span", { class: "muted group-count" });
    const node = el(
      "details",
      { class: "panel-group", open: true, dataset: { group: prefix } },
      el("summary", { class: "group-title" }, el("span", { class: "group-name" }, prefix), " ", count),
      body,
    );
    group = { prefix, node, body, count, names: [] };
    this.groups.set(prefix, group);
    const order = [...this.groups.keys()].sort(compareGroups);
    const next = order[order.indexOf(prefix) + 1];
    this.groupBox.insertBefore(node, next === undefined ? null : this.groups.get(next).node);
    return group;
  }

  /** Put a group's unpinned panels in name order. */
  layoutGroup(group) {
    const pinned = new Set(this.pinned);
    for (const name of group.names) {
      if (!pinned.has(name)) group.body.append(this.panels.get(name).node);
    }
  }

  layoutPins() {
    for (const name of this.pinned) {
      const panel = this.panels.get(name);
      if (panel) this.pinBox.append(panel.node);
    }
    this.pinSection.hidden = !this.pinned.some((name) => this.panels.has(name));
  }

  makePanel(name) {
    const body = el("div", { class: "panel-canvas" });
    const note = el("div", { class: "panel-note muted" }, "…");
    body.append(note);
    const last = el("span", { class: "panel-last muted" });
    const head = el("div", { class: "panel-head" }, el("span", { class: "panel-title", title: name }, name), last);
    const node = el("div", { class: "metric-panel", dataset: { panel: name } }, head, body);
    const panel = {
      name, node, head, body, note, last, tools: null,
      canvas: null, chart: null, visible: false, stale: true, fetching: false,
      pending: [], failedAt: 0, sent: 0,
    };
    node.addEventListener("click", (event) => {
      const action = event.target.closest("[data-action]")?.dataset.action;
      if (action) this.act(panel, action);
    });
    // A pinned, expanded or log-scaled panel shows its buttons at once; others when drawn
    // (500 panels are built before any is seen: fewer nodes, a faster first screen).
    if (this.pinned.includes(name) || this.expanded.has(name) || this.logged.has(name)) {
      this.ensureTools(panel);
    }
    this.observer?.observe(node);
    return panel;
  }

  /** The panel's buttons: log, pin, expand, CSV, PNG. */
  ensureTools(panel) {
    if (panel.tools) return;
    const button = (action, text, title) =>
      el("button", { type: "button", class: "panel-tool", dataset: { action }, title, "aria-label": title }, text);
    panel.tools = {
      log: button("log", "log", "Logarithmic y axis"),
      pin: button("pin", "pin", "Pin to the top"),
      expand: button("expand", "⤢", "Full width"),
    };
    const { log, pin, expand } = panel.tools;
    panel.head.append(
      el(
        "span",
        { class: "panel-tools" },
        log,
        pin,
        expand,
        button("csv", "CSV", "Download CSV"),
        button("png", "PNG", "Download PNG"),
      ),
    );
    this.showToggles(panel);
  }

  showToggles(panel) {
    const { name } = panel;
    panel.node.classList.toggle("expanded", this.expanded.has(name));
    panel.node.classList.toggle("is-pinned", this.pinned.includes(name));
    if (!panel.tools) return;
    const { log, pin, expand } = panel.tools;
    log.setAttribute("aria-pressed", String(this.logged.has(name)));
    pin.setAttribute("aria-pressed", String(this.pinned.includes(name)));
    pin.textContent = this.pinned.includes(name) ? "unpin" : "pin";
    expand.setAttribute("aria-pressed", String(this.expanded.has(name)));
  }

  act(panel, action) {
    const { name } = panel;
    if (action === "log") {
      if (!this.logged.delete(name)) this.logged.add(name);
      if (panel.chart) {
        panel.chart.options.scales.y.type = this.logged.has(name) ? "logarithmic" : "linear";
        panel.chart.update("none");
      }
    } else if (action === "pin") {
      this.togglePin(name);
    } else if (action === "expand") {
      if (!this.expanded.delete(name)) this.expanded.add(name);
    } else if (action === "csv") {
      this.downloadCsv(panel);
      return;
    } else if (action === "png") {
      this.downloadPng(panel);
      return;
    }
    this.showToggles(panel);
    this.onStateChange(this.state);
  }

  togglePin(name) {
    const at = this.pinned.indexOf(name);
    if (at >= 0) {
      this.pinned.splice(at, 1);
      this.layoutGroup(this.groups.get(prefixOf(name)));
    } else {
      this.pinned.push(name);
    }
    this.layoutPins();
    this.applyFilter();
  }

  /** The view state to persist: pinned, log-scaled and expanded panels. */
  get state() {
    return { pinned: [...this.pinned], log: [...this.logged], expanded: [...this.expanded] };
  }

  setFilter(text) {
    if (this.input.value !== text) this.input.value = text;
    this.filter = parseFilter(text);
    this.applyFilter();
  }

  applyFilter() {
    const { test, error } = this.filter;
    this.error.hidden = !error;
    this.error.textContent = error || "";
    let shown = 0;
    for (const panel of this.panels.values()) {
      const match = test(panel.name);
      panel.node.hidden = !match;
      if (match) shown++;
    }
    const pinned = new Set(this.pinned);
    for (const group of this.groups.values()) {
      const inGroup = group.names.filter((name) => !pinned.has(name));
      const visible = inGroup.filter((name) => !this.panels.get(name).node.hidden).length;
      group.node.hidden = visible === 0;
      group.count.textContent = visible === inGroup.length ? `${visible}` : `${visible} of ${inGroup.length}`;
    }
    const total = this.panels.size;
    this.count.textContent = shown === total ? `${total} metrics` : `${shown} of ${total} metrics`;
  }

  /** New smoothing / x axis / step range: every panel is re-requested (visible ones now). */
  setView(view) {
    this.view = { ...this.view, ...view };
    this.generation++;
    for (const panel of this.panels.values()) {
      panel.stale = true;
      panel.failedAt = 0;
      if (panel.visible) this.queue.add(panel);
    }
    this.pump();
  }

  onIntersect(entries) {
    for (const entry of entries) {
      const panel = this.panels.get(entry.target.dataset.panel);
      if (!panel) continue;
      panel.visible = entry.isIntersecting;
      if (panel.visible && panel.stale) this.queue.add(panel);
      else if (!panel.visible) this.queue.delete(panel);
    }
    this.pump();
  }

  /** Send batched requests for visible stale panels, never more than MAX_IN_FLIGHT at once. */
  pump() {
    while (this.stats.inFlight < MAX_IN_FLIGHT && this.queue.size) {
      const batch = [];
      for (const panel of this.queue) {
        this.queue.delete(panel);
        if (!panel.visible || !panel.stale || panel.fetching || panel.node.hidden) continue;
        if (Date.now() - panel.failedAt < RETRY_MS) continue;
        batch.push(panel);
        if (batch.length === BATCH) break;
      }
      if (!batch.length) return;
      this.request(batch);
    }
  }

  async request(batch) {
    const generation = this.generation;
    // `width`: the widest chart of the batch in CSS px (a points budget for the request).
    const width = Math.max(0, ...batch.map((panel) => panel.body.clientWidth));
    const view = { ...this.view, width };
    for (const panel of batch) {
      panel.fetching = true;
      panel.pending = [];
    }
    this.stats.requests++;
    this.stats.inFlight++;
    this.stats.maxInFlight = Math.max(this.stats.maxInFlight, this.stats.inFlight);
    let result = null;
    let failure = null;
    try {
      result = await this.fetchSeries(batch.map((panel) => panel.name), view);
    } catch (error) {
      failure = error;
    }
    this.stats.inFlight--;
    for (const panel of batch) {
      panel.fetching = false;
      if (generation !== this.generation) {
        if (panel.visible) this.queue.add(panel); // the view changed meanwhile: ask again
      } else if (failure) {
        panel.failedAt = Date.now();
        panel.note.textContent = `could not load: ${failure.message}`;
        panel.note.hidden = false;
        setTimeout(() => panel.visible && panel.stale && (this.queue.add(panel), this.pump()), RETRY_MS);
      } else {
        this.draw(panel, result.get(panel.name) || [], view);
        for (const [key, point] of panel.pending) this.appendTo(panel, key, point);
      }
      panel.pending = [];
    }
    this.pump();
  }

  datasets(lines) {
    const sets = [];
    lines.forEach((line, i) => {
      const color = line.color || colorAt(i);
      const smoothed = Array.isArray(line.smoothed);
      const common = { pointRadius: 0, pointHitRadius: 4, spanGaps: false, _key: line.key };
      if (Array.isArray(line.min) && Array.isArray(line.max)) {
        const band = { ...common, borderWidth: 0, backgroundColor: withAlpha(color, 0.15) };
        sets.push({ ...band, label: `${line.label} (min)`, data: points(line.x, line.min), fill: false, _role: "band_min" });
        sets.push({ ...band, label: `${line.label} (max)`, data: points(line.x, line.max), fill: "-1", _role: "band_max" });
      }
      sets.push({
        ...common,
        label: line.label,
        data: points(line.x, line.y),
        borderColor: smoothed ? withAlpha(color, 0.3) : color,
        backgroundColor: color,
        borderWidth: smoothed ? 1 : 1.5,
        _role: "raw",
      });
      if (smoothed) {
        sets.push({
          ...common,
          label: `${line.label} (smoothed)`,
          data: points(line.x, line.smoothed),
          borderColor: color,
          backgroundColor: color,
          borderWidth: 1.8,
          _role: "smoothed",
          _ema: lastFinite(line.smoothed),
        });
      }
    });
    return sets;
  }

  config(panel, datasets, view) {
    const legendShown = this.legend && datasets.some((d) => d._role === "raw");
    return applyTicks({
      type: "line",
      data: { datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        responsive: true,
        parsing: false, // the points are {x, y} objects in x order already
        normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        plugins: {
          legend: {
            display: legendShown,
            position: "bottom",
            maxHeight: 44,
            labels: { boxWidth: 10, boxHeight: 2, filter: (item, data) => data.datasets[item.datasetIndex]._role === "raw" },
          },
          tooltip: { filter: (item) => !String(item.dataset._role).startsWith("band") },
        },
        scales: {
          x: {
            type: view.x === "time" ? "time" : "linear",
            ticks: { maxTicksLimit: 6, maxRotation: 0 },
            title: { display: false },
          },
          y: {
            type: this.logged.has(panel.name) ? "logarithmic" : "linear",
            ticks: { maxTicksLimit: 6 },
          },
        },
      },
    });
  }

  draw(panel, lines, view) {
    const datasets = this.datasets(lines);
    panel.sent = Math.max(1, ...lines.map((line) => line.x.length));
    const empty = lines.every((line) => line.x.length === 0);
    panel.note.textContent = empty ? "no points in this range" : "";
    panel.note.hidden = !empty;
    if (panel.chart) panel.chart.destroy();
    if (!panel.canvas) {
      panel.canvas = el("canvas", { role: "img", "aria-label": panel.name });
      panel.body.prepend(panel.canvas);
      if (this.onZoom) this.wireDragZoom(panel);
    }
    panel.chart = new window.Chart(panel.canvas, this.config(panel, datasets, view));
    this.ensureTools(panel);
    panel.stale = false;
    panel.failedAt = 0;
    this.showLast(panel);
    panel.node.dataset.drawn = "1";
    panel.node.dataset.drawnAt = String(performance.now());
  }

  showLast(panel) {
    const raws = panel.chart.data.datasets.filter((d) => d._role === "raw");
    if (raws.length !== 1) {
      panel.last.textContent = "";
      return;
    }
    const data = raws[0].data;
    const y = data.length ? data[data.length - 1].y : null;
    panel.last.textContent = y === null || y === undefined ? "" : Number(y.toPrecision(5)).toString();
  }

  /**
   * A live point of line `key` in panel `name`: {x (on the current axis), y, step}.
   * Drawn panels get it at once; undrawn ones are re-requested when next in view;
   * an unknown name adds a panel.
   */
  append(name, key, point) {
    const panel = this.panels.get(name);
    if (!panel) {
      this.addNames([name]);
      return;
    }
    const { startStep, endStep } = this.view;
    if (point.step !== undefined && point.step !== null) {
      if (startStep !== null && point.step < startStep) return;
      if (endStep !== null && point.step > endStep) return;
    }
    if (panel.fetching) {
      panel.pending.push([key, point]);
      return;
    }
    if (!panel.chart || panel.stale) {
      panel.stale = true;
      if (panel.visible) {
        this.queue.add(panel);
        this.pump();
      }
      return;
    }
    this.appendTo(panel, key, point);
  }

  appendTo(panel, key, { x, y }) {
    if (x === null || x === undefined || Number.isNaN(x) || !panel.chart) return;
    const sets = panel.chart.data.datasets.filter((d) => d._key === key);
    if (!sets.length) {
      this.refetch(panel); // a line the panel has not shown yet
      return;
    }
    const replace = this.view.x !== "epoch"; // epochs repeat across steps
    const value = Number.isFinite(y) ? y : null;
    const alpha = this.view.smoothing > 0 ? 1 - this.view.smoothing : 1;
    for (const set of sets) {
      if (set._role === "raw") upsert(set.data, x, value, replace);
      else if (set._role === "smoothed") {
        if (value !== null) set._ema = set._ema === null ? value : set._ema + alpha * (value - set._ema);
        upsert(set.data, x, value === null ? null : set._ema, replace);
      } else if (set._role === "band_min" || set._role === "band_max") upsert(set.data, x, value, replace);
      if (set.data.length > REFETCH_FACTOR * Math.max(panel.sent, 100)) this.refetch(panel);
    }
    this.dirty.add(panel);
    this.scheduleDraw();
  }

  refetch(panel) {
    panel.stale = true;
    if (panel.visible) {
      this.queue.add(panel);
      this.pump();
    }
  }

  scheduleDraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      for (const panel of this.dirty) {
        if (!panel.chart) continue;
        panel.chart.update("none");
        this.showLast(panel);
        panel.note.hidden = true;
      }
      this.dirty.clear();
    });
  }

  /** Drag across a panel (x = step) to zoom the whole page to that step range. */
  wireDragZoom(panel) {
    const band = el("div", { class: "drag-band", hidden: true });
    panel.body.append(band);
    let from = null;
    panel.canvas.addEventListener("mousedown", (event) => {
      if (this.view.x !== "step" || event.button !== 0) return;
      from = event.offsetX;
      band.hidden = false;
      band.style.left = `${from}px`;
      band.style.width = "0px";
    });
    panel.canvas.addEventListener("mousemove", (event) => {
      if (from === null) return;
      band.style.left = `${Math.min(from, event.offsetX)}px`;
      band.style.width = `${Math.abs(event.offsetX - from)}px`;
    });
    const finish = (event) => {
      if (from === null) return;
      const start = from;
      from = null;
      band.hidden = true;
      if (!panel.chart || Math.abs(event.offsetX - start) < 6) return;
      const scale = panel.chart.scales.x;
      const a = scale.getValueForPixel(Math.min(start, event.offsetX));
      const b = scale.getValueForPixel(Math.max(start, event.offsetX));
      this.onZoom(Math.max(0, Math.floor(a)), Math.max(0, Math.ceil(b)));
    };
    panel.canvas.addEventListener("mouseup", finish);
    panel.canvas.addEventListener("mouseleave", finish);
  }

  downloadCsv(panel) {
    const url = this.csvUrl(panel.name);
    if (url) {
      download(url, this.fileName(panel.name, "csv"));
      return;
    }
    const sets = panel.chart ? panel.chart.data.datasets.filter((d) => !d._role.startsWith("band")) : [];
    const rows = new Map(); // x -> values per dataset
    sets.forEach((set, i) => {
      for (const { x, y } of set.data) {
        if (!rows.has(x)) rows.set(x, new Array(sets.length).fill(""));
        rows.get(x)[i] = y ?? "";
      }
    });
    const header = [this.view.x, ...sets.map((set) => set.label)].map(csvField).join(",");
    const lines = [...rows.keys()]
      .sort((a, b) => a - b)
      .map((x) => [x, ...rows.get(x)].map(csvField).join(","));
    const blob = new Blob([[header, ...lines].join("\n") + "\n"], { type: "text/csv" });
    const href = URL.createObjectURL(blob);
    download(href, this.fileName(panel.name, "csv"));
    setTimeout(() => URL.revokeObjectURL(href), 10_000);
  }

  /** The panel's chart as a PNG on the panel's background colour. */
  pngDataUrl(panel) {
    if (!panel.canvas) return null;
    const out = document.createElement("canvas");
    out.width = panel.canvas.width;
    out.height = panel.canvas.height;
    const ctx = out.getContext("2d");
    ctx.fillStyle = getComputedStyle(panel.node).backgroundColor || "#fff";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(panel.canvas, 0, 0);
    return out.toDataURL("image/png");
  }

  downloadPng(panel) {
    const url = this.pngDataUrl(panel);
    if (url) download(url, this.fileName(panel.name, "png"));
  }

  destroy() {
    this.observer.disconnect();
    for (const panel of this.panels.values()) panel.chart?.destroy();
    this.panels.clear();
    cancelAnimationFrame(this.frame);
  }
}
