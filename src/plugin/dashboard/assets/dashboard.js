// The dashboard's only script, inlined into every page. A running step's bar grows with the
// clock (measured from the server's time, so a skewed browser clock does not stretch it), and
// a page that shows one object reloads when the server's watch sees it or its Jobs change.
(() => {
  const timeline = document.querySelector(".timeline");
  if (timeline) {
    const t0 = Number(timeline.dataset.t0);
    const t1 = Number(timeline.dataset.t1);
    const skew = Number(timeline.dataset.now) - Date.now();
    const grow = () => {
      const now = Date.now() + skew;
      for (const bar of timeline.querySelectorAll('.bar[data-running="1"]')) {
        const start = Number(bar.dataset.start);
        const left = ((start - t0) / (t1 - t0)) * 100;
        const width = Math.min(Math.max(((now - start) / (t1 - t0)) * 100, 0.4), 100 - left);
        bar.style.width = width.toFixed(3) + "%";
      }
    };
    grow();
    setInterval(grow, 1000);
  }
  const changes = document.body.dataset.changes;
  if (changes && "EventSource" in window) {
    let pending;
    new EventSource(changes).addEventListener("changed", () => {
      clearTimeout(pending);
      pending = setTimeout(() => location.reload(), 300);
    });
  }
})();
