// "Compare runs": one metric of several jobs overlaid on one Chart.js chart.

import { getJSON } from "./common.js";

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];

export class Compare {
  constructor(canvas, metricSelect, logBox, note) {
    this.canvas = canvas;
    this.metricSelect = metricSelect;
    this.logBox = logBox;
    this.note = note;
    this.jobs = [];
    this.steps = new Map(); // job id -> current_step drawn
    this.chart = null;
    this.loading = 0;
    metricSelect.addEventListener("change", () => this.draw());
    logBox.addEventListener("change", () => this.draw());
  }

  /** The picked jobs changed: rebuild the metric choices and redraw. */
  setJobs(jobs) {
    this.jobs = jobs;
    const names = new Set();
    for (const job of jobs) for (const name of job.metric_names) names.add(name);
    const current = this.metricSelect.value;
    const sorted = [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    this.metricSelect.replaceChildren(
      ...sorted.map((name) => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        return option;
      }),
    );
    if (sorted.includes(current)) this.metricSelect.value = current;
    this.note.textContent = jobs.length
      ? `${jobs.length} job${jobs.length > 1 ? "s" : ""} selected`
      : "Select jobs in the table (⇄), then a metric.";
    this.draw();
  }

  /** A poll brought fresh job objects: redraw when one of them has new steps. */
  refreshJobs(jobs) {
    this.jobs = jobs;
    if (jobs.some((job) => this.steps.get(job.id) !== job.current_step)) this.draw();
  }

  async draw() {
    const metric = this.metricSelect.value;
    const jobs = this.jobs;
    const ticket = ++this.loading;
    if (!metric || !jobs.length) {
      this.render([], metric);
      return;
    }
    const query = new URLSearchParams({ metrics: metric, max_points: "1000" });
    const results = await Promise.all(
      jobs.map((job) =>
        getJSON(`/training/${encodeURIComponent(job.id)}/metrics/chart?${query}`).catch(() => null),
      ),
    );
    if (ticket !== this.loading) return;
    const datasets = [];
    results.forEach((body, i) => {
      const job = jobs[i];
      this.steps.set(job.id, job.current_step);
      if (!body) return;
      const raw = body.data.data.datasets.find((d) => d.role === "raw" && d.metric === metric);
      const color = PALETTE[i % PALETTE.length];
      datasets.push({
        label: `${job.name} (${job.id})`,
        data: raw ? raw.data : [],
        borderColor: color,
        backgroundColor: color,
        borderWidth: 1.5,
        pointRadius: 0,
        jobId: job.id,
      });
    });
    this.render(datasets, metric);
  }

  render(datasets, metric) {
    const logScale = this.logBox.checked;
    this.canvas.parentElement.hidden = !this.jobs.length;
    if (!this.chart) {
      this.chart = new window.Chart(this.canvas, {
        type: "line",
        data: { datasets },
        options: {
          animation: false,
          parsing: false,
          responsive: true,
          maintainAspectRatio: false,
          interaction: { mode: "nearest", axis: "x", intersect: false },
          plugins: { title: { display: true, text: metric || "Compare runs" } },
          scales: {
            x: { type: "linear", title: { display: true, text: "Step" } },
            y: { type: logScale ? "logarithmic" : "linear" },
          },
        },
      });
      return;
    }
    this.chart.data.datasets = datasets;
    this.chart.options.plugins.title.text = metric || "Compare runs";
    this.chart.options.scales.y.type = logScale ? "logarithmic" : "linear";
    this.chart.update("none");
  }
}

function rank(name) {
  if (name === "train_loss") return 0;
  if (name === "val_loss") return 1;
  if (name.includes("loss")) return 2;
  if (name.startsWith("gpu")) return 4;
  return 3;
}
