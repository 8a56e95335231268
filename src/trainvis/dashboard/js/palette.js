// The dashboard's line colours: 20 distinguishable hues, in the order series get them.
// The same list, in the same order, as the server's chart palette (charts/config.py PALETTE).

export const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
  "#a6761d",
  "#009e73",
  "#ff9896",
  "#637939",
  "#c5b0d5",
  "#e7298a",
  "#e6ab02",
  "#0e6655",
  "#74c476",
  "#56b4e9",
];

/** The colour of the i-th series (wraps around after the last). */
export function colorAt(i) {
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

/** `#rrggbb` with an alpha, as an rgba() string (for faded raw lines under a smoothed one). */
export function withAlpha(hex, alpha) {
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
