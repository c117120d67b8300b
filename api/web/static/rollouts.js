// The live view of a rollout: the rollout's run streams its events (SSE); each burst of
// events re-renders the batches and the host table from the server, which reads each
// host's state from those same events. At the end event, one last render.
(function () {
  "use strict";
  const DEBOUNCE_MS = 400;

  function follow(section) {
    if (section.dataset.following) return;
    section.dataset.following = "1";
    let timer = null;
    let finished = false;
    const refresh = () => {
      timer = null;
      const current = document.getElementById("rollout-progress");
      if (current) htmx.ajax("GET", section.dataset.progress, { target: current, swap: "outerHTML" });
    };
    const soon = () => { if (timer === null) timer = setTimeout(refresh, DEBOUNCE_MS); };
    const progress = document.getElementById("rollout-progress");
    if (progress && progress.dataset.status !== "running") return;
    const source = new EventSource(section.dataset.events);
    source.onmessage = soon;
    source.addEventListener("end", () => {
      finished = true;
      source.close();
      if (timer !== null) clearTimeout(timer);
      refresh();
    });
    source.onerror = () => {
      if (!finished && source.readyState === EventSource.CLOSED) refresh();
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    const section = document.getElementById("rollout-live");
    if (section) follow(section);
  });
})();
