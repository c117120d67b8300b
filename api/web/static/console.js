// DTMA console — the page behaviour htmx does not give on its own: the auto-refresh clock,
// live action logs and live tool logs over Server-Sent Events, and visible errors.
// No inline script anywhere (the Content-Security-Policy forbids it): everything is here.
"use strict";

(function () {
  const PAUSE_KEY = "dtma.refresh.paused";

  // ---- errors that htmx would otherwise swallow ---------------------------------------
  function toast(message) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast";
    item.setAttribute("role", "alert");
    item.textContent = message;
    box.appendChild(item);
    setTimeout(() => item.remove(), 8000);
  }

  function jsonErrorMessage(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) { /* not JSON */ }
    return null;
  }

  // Fragments answer 4xx/5xx with HTML that explains the failure: show it in place.
  htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "[45]..", swap: true, error: true },
  ];

  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    const type = xhr.getResponseHeader("content-type") || "";
    if (type.startsWith("application/json")) {
      // A JSON error (refused CSRF token, expired session…): never dump JSON into a page.
      event.detail.shouldSwap = false;
      toast(jsonErrorMessage(xhr) || `Request failed (HTTP ${xhr.status})`);
    }
  });

  document.addEventListener("htmx:sendError", () => {
    toast("The console did not answer. Is the service running?");
  });

  // ---- auto-refresh ---------------------------------------------------------------------
  let lastRefresh = new Date();

  function paused() { return localStorage.getItem(PAUSE_KEY) === "1"; }

  function showRefreshState() {
    const seconds = document.body.dataset.refreshSeconds;
    document.querySelectorAll("[data-refresh-control]").forEach((control) => {
      const button = control.querySelector("[data-refresh-toggle]");
      const status = control.querySelector("[data-refresh-status]");
      button.setAttribute("aria-pressed", paused() ? "true" : "false");
      button.textContent = paused() ? "Resume" : "Pause";
      status.textContent = paused()
        ? "Auto-refresh paused"
        : `Auto-refresh every ${seconds} s · updated ${lastRefresh.toLocaleTimeString()}`;
    });
  }

  function startClock() {
    const seconds = Number(document.body.dataset.refreshSeconds || "0");
    if (!seconds) return;
    setInterval(() => {
      if (paused() || document.hidden) return;
      lastRefresh = new Date();
      htmx.trigger(document.body, "dtma:refresh");
      showRefreshState();
    }, seconds * 1000);
    document.addEventListener("click", (event) => {
      const button = event.target.closest("[data-refresh-toggle]");
      if (!button) return;
      localStorage.setItem(PAUSE_KEY, paused() ? "0" : "1");
      showRefreshState();
    });
    showRefreshState();
  }

  // ---- action runs: events stream into the action log -----------------------------------
  function eventLine(event) {
    const item = document.createElement("li");
    const type = document.createElement("span");
    type.className = "ev-type ev-" + String(event.type || "").replace(/^(task|runner)_/, "");
    type.textContent = event.type || "event";
    const text = document.createElement("span");
    const parts = [event.host, event.task].filter(Boolean);
    const message = event.data && (event.data.msg || event.data.message || event.data.stderr);
    if (message) parts.push(String(message));
    text.textContent = parts.join(" · ");
    item.append(type, text);
    return item;
  }

  function followRun(article) {
    if (article.dataset.following) return;
    article.dataset.following = "1";
    const list = article.querySelector(".run-events");
    const source = new EventSource(article.dataset.events);
    let finished = false;
    source.onmessage = (message) => {
      try {
        list.appendChild(eventLine(JSON.parse(message.data)));
        list.scrollTop = list.scrollHeight;
      } catch (_) { /* ignore a malformed line */ }
    };
    source.addEventListener("end", () => {
      finished = true;
      source.close();
      // The server renders the finished run (its ConsoleResult) in place.
      htmx.ajax("GET", article.dataset.result, { target: article, swap: "outerHTML" })
        .then(() => htmx.trigger(document.body, "dtma:changed"));
    });
    // The card is replaced (cancelled, or swapped for its result): stop listening.
    article.addEventListener("htmx:beforeCleanupElement", () => { finished = true; source.close(); });
    source.onerror = () => {
      if (finished) return;
      if (source.readyState === EventSource.CLOSED) {
        htmx.ajax("GET", article.dataset.result, { target: article, swap: "outerHTML" });
      }
      // Otherwise EventSource reconnects by itself, resuming with Last-Event-ID.
    };
  }

  // ---- tool logs: live tail with pause/resume ---------------------------------------------
  const MAX_LINES = 5000;

  function followLogs(panel) {
    const view = panel.querySelector("[data-log-view]");
    const state = panel.querySelector("[data-log-state]");
    const pauseButton = panel.querySelector("[data-log-pause]");
    const form = panel.querySelector("[data-log-form]");
    const download = panel.querySelector("[data-log-download]");
    let source = null;
    let buffer = [];
    let isPaused = false;

    function setState(text, kind) {
      state.textContent = text;
      state.className = "live-dot" + (kind ? " " + kind : "");
    }

    function append(line, className) {
      const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
      const span = document.createElement("span");
      if (className) span.className = className;
      span.textContent = line + "\n";
      view.appendChild(span);
      while (view.childNodes.length > MAX_LINES) view.firstChild.remove();
      if (atBottom) view.scrollTop = view.scrollHeight;
    }

    function stop() {
      if (source) { source.close(); source = null; }
    }

    function start() {
      stop();
      buffer = [];
      view.textContent = "";
      const tool = form.elements.tool.value;
      const tail = form.elements.tail.value;
      if (!tool) { setState("No tool selected", ""); return; }
      const base = panel.dataset.base + encodeURIComponent(tool) + "/logs";
      download.href = `${base}.txt?tail=${encodeURIComponent(tail)}`;
      download.removeAttribute("aria-disabled");
      source = new EventSource(`${base}/stream?tail=${encodeURIComponent(tail)}`);
      setState("Connecting…", "");
      source.onopen = () => setState(isPaused ? "Paused" : "Live", isPaused ? "" : "on");
      source.onmessage = (message) => {
        if (isPaused) {
          buffer.push(message.data);
          if (buffer.length > MAX_LINES) buffer.shift();
          setState(`Paused · ${buffer.length} new line(s)`, "");
        } else {
          append(message.data);
        }
      };
      source.addEventListener("failure", (message) => {
        append(message.data, "log-error");
        setState("Failed", "err");
        stop();
      });
      source.addEventListener("end", () => {
        append("— the log stream ended (the container stopped or was removed) —", "log-note");
        setState("Ended", "");
        stop();
      });
      source.onerror = () => {
        if (source && source.readyState === EventSource.CLOSED) {
          setState("Disconnected", "err");
        } else {
          setState("Reconnecting…", "err");
        }
      };
    }

    pauseButton.addEventListener("click", () => {
      isPaused = !isPaused;
      pauseButton.textContent = isPaused ? "Resume" : "Pause";
      pauseButton.setAttribute("aria-pressed", isPaused ? "true" : "false");
      if (!isPaused) {
        buffer.forEach((line) => append(line));
        buffer = [];
      }
      if (source) setState(isPaused ? "Paused" : "Live", isPaused ? "" : "on");
    });
    form.addEventListener("change", start);
    form.addEventListener("submit", (event) => { event.preventDefault(); start(); });
    // htmx removes the panel when another tab is chosen: close the stream with it.
    panel.addEventListener("htmx:beforeCleanupElement", stop);
    start();
  }

  // ---- wiring -----------------------------------------------------------------------------
  // `root` itself and everything in it (htmx hands over the swapped element).
  function within(root, selector) {
    const found = Array.from(root.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) found.unshift(root);
    return found;
  }

  function activate(root) {
    within(root, ".run[data-events]").forEach(followRun);
    within(root, "[data-logs-panel]").forEach((panel) => {
      if (panel.dataset.wired) return;
      panel.dataset.wired = "1";
      followLogs(panel);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    startClock();
    htmx.onLoad(activate);
  });
})();
