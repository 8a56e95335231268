// Axis tick labels that differ from each other: as many significant digits as the
// tick spacing needs (learning-rate ticks read 3e-3, 3.05e-3, 3.1e-3, not 3.0e-3
// eight times), SI suffixes for large numbers, and a 1-2-5 / 1-3 / 1 subset of
// labels on log axes (1e-4, 3e-4, 1e-3, ...).

const SI = [
  [1e12, "T"],
  [1e9, "G"],
  [1e6, "M"],
  [1e3, "k"],
];
const MAX_DIGITS = 12;

/** Drop trailing zeros of a fixed or exponential number string ("3.050e-3" -> "3.05e-3"). */
function trim(text) {
  const [mantissa, exponent] = text.split("e");
  let m = mantissa;
  if (m.includes(".")) m = m.replace(/0+$/, "").replace(/\.$/, "");
  if (m === "-0") m = "0";
  if (exponent === undefined) return m;
  return `${m}e${Number(exponent)}`;
}

/** The first format (by increasing digits) under which distinct values get distinct labels. */
function firstDistinct(values, format) {
  const distinct = new Set(values).size;
  for (let digits = 0; digits <= MAX_DIGITS; digits++) {
    const labels = values.map((v) => format(v, digits));
    if (new Set(labels).size >= distinct) return labels;
  }
  return values.map((v) => format(v, MAX_DIGITS));
}

/** Labels for the ticks of a linear axis (`values` in axis order). */
export function linearLabels(values) {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return values.map(String);
  const sorted = [...new Set(finite)].sort((a, b) => a - b);
  let step = Infinity;
  for (let i = 1; i < sorted.length; i++) step = Math.min(step, sorted[i] - sorted[i - 1]);
  // Chart.js ticks near zero can be 1e-17 instead of 0: snap them.
  const snap = (v) => (Number.isFinite(step) && Math.abs(v) < step * 1e-6 ? 0 : v);
  const vals = values.map((v) => (Number.isFinite(v) ? snap(v) : v));
  const maxAbs = Math.max(...vals.filter(Number.isFinite).map(Math.abs));
  if (maxAbs === 0) return vals.map(() => "0");
  if (maxAbs >= 1e4) {
    const [unit, suffix] = SI.find(([u]) => maxAbs >= u * 10 || u === 1e3);
    return firstDistinct(vals, (v, d) => (v === 0 ? "0" : `${trim((v / unit).toFixed(d))}${suffix}`));
  }
  if (maxAbs < 1e-3) {
    return firstDistinct(vals, (v, d) => (v === 0 ? "0" : trim(v.toExponential(d))));
  }
  return firstDistinct(vals, (v, d) => trim(v.toFixed(d)));
}

const exponentOf = (v) => Math.floor(Math.log10(v) + 1e-9);

/** One log-axis label: plain (0.001, 20) or `m e exponent` (3e-5) for the whole axis. */
function logLabel(v, scientific) {
  if (!scientific) return String(Number(v.toPrecision(3)));
  const exponent = exponentOf(v);
  return `${Number((v / 10 ** exponent).toPrecision(3))}e${exponent}`;
}

/** Labels for the ticks of a logarithmic axis: a readable subset, "" for the rest. */
export function logLabels(values) {
  const positive = values.filter((v) => Number.isFinite(v) && v > 0);
  if (!positive.length) return values.map(() => "");
  const decades = Math.log10(Math.max(...positive) / Math.min(...positive));
  if (decades <= 1.05) {
    const labels = linearLabels(values);
    return values.map((v, i) => (v > 0 ? labels[i] : ""));
  }
  const keep = decades > 6 ? [1] : decades > 3 ? [1, 3] : [1, 2, 5];
  // One style per axis: plain numbers when every tick is between 0.001 and 99,999.
  const scientific = exponentOf(Math.min(...positive)) < -3 || exponentOf(Math.max(...positive)) > 4;
  return values.map((v) => {
    if (!(v > 0)) return "";
    const mantissa = v / 10 ** exponentOf(v);
    const lead = Math.round(mantissa);
    return Math.abs(mantissa - lead) < 0.01 && keep.includes(lead) ? logLabel(v, scientific) : "";
  });
}

const cache = new WeakMap(); // Chart.js tick array -> labels

/** A Chart.js `ticks.callback` (called with the scale as `this`). */
export function tickCallback(value, index, ticks) {
  let labels = cache.get(ticks);
  if (!labels) {
    const values = ticks.map((tick) => tick.value);
    labels = this.type === "logarithmic" ? logLabels(values) : linearLabels(values);
    cache.set(ticks, labels);
  }
  return labels[index] ?? "";
}

/** Give every numeric axis of a Chart.js config the tick labels above (time axes keep theirs). */
export function applyTicks(config) {
  for (const scale of Object.values(config.options?.scales || {})) {
    if (scale.type === "time" || scale.type === "timeseries" || scale.type === "category") continue;
    scale.ticks = { ...scale.ticks, callback: tickCallback };
  }
  return config;
}
