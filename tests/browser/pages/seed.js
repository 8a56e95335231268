// Harness of the seed test page: defines what the seed's snippets assume
// (`ctx`, a place to render <LossChart>) and, with ?sse=1, starts its EventSource snippet.
/* global LossChart, React, ReactDOM */

// The seed's loadLossChart draws on a free variable `ctx`: the page's canvas.
var ctx = document.getElementById("seed-chartjs") || null;
document.addEventListener("DOMContentLoaded", function () {
  ctx = document.getElementById("seed-chartjs");
});

// Render the seed's <LossChart data={data} /> with a chart fetched in Recharts format.
window.renderSeedRecharts = async function (jobId) {
  const response = await fetch(`/api/v1/visualization/training/${jobId}/loss?format=recharts`);
  const { data } = await response.json();
  window.seedRechartsData = data;
  const root = ReactDOM.createRoot(document.getElementById("seed-recharts"));
  root.render(React.createElement(LossChart, { data }));
};

if (new URLSearchParams(window.location.search).get("sse") === "1") {
  const script = document.createElement("script");
  script.src = "/test-pages/seed-eventsource.js";
  document.head.append(script);
}
