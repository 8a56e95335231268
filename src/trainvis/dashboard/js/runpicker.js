// The runs table's choices (issue 16): the column picker's check boxes and the
// suggestion lists of the config-key, metric-name and tag inputs, learnt from
// the jobs listed so far. Names are user data: Sets and text nodes only.

import { el } from "./common.js";
import { FIXED, flattenConfig, parseColumn } from "./runstable.js";

/** At most this many suggestions per list (a wide job has thousands of metrics). */
const MAX_OPTIONS = 1000;

function options(id, values) {
  const sorted = [...values].sort().slice(0, MAX_OPTIONS);
  document.getElementById(id).replaceChildren(...sorted.map((value) => el("option", { value })));
}

export class Choices {
  /** `onToggle(key, on)` runs when a column's check box changes. */
  constructor(onToggle) {
    this.onToggle = onToggle;
    this.config = new Set();
    this.metrics = new Set();
    this.tags = new Set();
  }

  /** Remember the config paths, metric names and tags of `jobs`; true when any is new. */
  learn(jobs) {
    const before = this.config.size + this.metrics.size + this.tags.size;
    for (const job of jobs) {
      for (const path of flattenConfig(job.config).keys()) this.config.add(path);
      for (const name of job.metric_names) this.metrics.add(name);
      for (const tag of job.tags) this.tags.add(tag);
    }
    return this.config.size + this.metrics.size + this.tags.size !== before;
  }

  /** Draw the suggestion lists and the picker's boxes, checked for the columns `cols`. */
  render(cols) {
    options("config-keys", this.config);
    options("metric-names", this.metrics);
    options("tag-options", this.tags);
    const shown = new Set(cols);
    const box = (key, label) =>
      el(
        "label",
        { class: "col-choice", dataset: { col: key } },
        el("input", {
          type: "checkbox",
          checked: shown.has(key),
          onchange: (event) => this.onToggle(key, event.target.checked),
        }),
        " ",
        label,
      );
    document.getElementById("fixed-columns").replaceChildren(
      ...[...FIXED].map(([key, column]) => box(key, column.label)),
    );
    const configKeys = [...this.config].sort().map((path) => box(`config.${path}`, path));
    document.getElementById("config-columns").replaceChildren(
      ...(configKeys.length ? configKeys : [el("span", { class: "muted" }, "no config keys yet")]),
    );
    const metricCols = cols.map(parseColumn).filter((column) => column && column.kind === "metric");
    document.getElementById("metric-columns").replaceChildren(
      ...metricCols.map((column) => box(column.key, column.label)),
    );
  }
}
