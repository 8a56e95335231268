// The dashboard's line colours: 20 distinguishable hues, in the order series get them.
// The first ten are Matplotlib's tab10 (the server's chart palette starts the same way).

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
  "#393b79",
  "#637939",
  "#8c6d31",
  "#843c39",
  "#7b4173",
  "#e7969c",
  "#9edae5",
  "#fdae6b",
  "#a1d99b",
  "#c5b0d5",
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
