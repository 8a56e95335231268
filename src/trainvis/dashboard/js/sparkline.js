// A tiny loss sparkline drawn straight on a canvas (no Chart.js instance per row).

import { getJSON, num } from "./common.js";

const WIDTH = 120;
const HEIGHT = 28;

/** Draw `values` (numbers, NaN/null are gaps) onto `canvas`. */
export function drawSparkline(canvas, values) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = WIDTH * ratio;
  canvas.height = HEIGHT * ratio;
  canvas.style.width = `${WIDTH}px`;
  canvas.style.height = `${HEIGHT}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, WIDTH, HEIGHT);
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length < 2) return;
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  // the theme's accent (style.css --accent, dark mode included)
  ctx.strokeStyle = getComputedStyle(canvas).getPropertyValue("--accent").trim() || "#2563eb";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  let pen = false;
  values.forEach((v, i) => {
    if (!Number.isFinite(v)) {
      pen = false;
      return;
    }
    const x = 2 + (i / (values.length - 1)) * (WIDTH - 4);
    const y = HEIGHT - 2 - ((v - lo) / (hi - lo)) * (HEIGHT - 4);
    if (pen) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
    pen = true;
  });
  ctx.stroke();
}

/** Fetch a job's loss (downsampled to ~60 points) and draw it. */
export async function loadSparkline(canvas, jobId, metric) {
  const query = new URLSearchParams({ metrics: metric, max_points: "60" });
  const body = await getJSON(`/training/${encodeURIComponent(jobId)}/metrics/history?${query}`);
  const values = body.data.map((row) => num(row[metric])).filter((v) => v !== null);
  drawSparkline(canvas, values);
}
