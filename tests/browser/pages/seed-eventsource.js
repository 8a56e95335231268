// The seed's SSE example (SEED.md, "5. SSE 实时流"), verbatim. The browser test
// maps localhost:8000 onto the live test server, so the URL works as written.
// The only addition: the events are recorded on window.seedEvents for the test.
window.seedEvents = { messages: [], metrics: [] };

const eventSource = new EventSource('http://localhost:8000/api/v1/visualization/training/job-001/stream');

eventSource.onmessage = (event) => {
  const data = JSON.parse(event.data);
  console.log('New metrics:', data);
  window.seedEvents.messages.push(data);
};

eventSource.addEventListener('metrics', (event) => {
  const metrics = JSON.parse(event.data);
  // 更新图表
  window.seedEvents.metrics.push(metrics);
});
