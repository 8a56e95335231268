// The seed's Chart.js example (SEED.md, "Chart.js 示例"), verbatim. `ctx` is the
// free variable the seed assumes; seed.js defines it before calling.
async function loadLossChart(jobId) {
  const response = await fetch(`/api/v1/visualization/training/${jobId}/loss`);
  const { data } = await response.json();
  
  new Chart(ctx, {
    type: data.type,
    data: data.data,
    options: data.options
  });
}
