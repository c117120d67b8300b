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

  // ---- tool logs: live tail that keeps the reader's place ----------------------------------
  // Follows new lines only while the view is scrolled to the bottom; otherwise it stays put
  // and offers "jump to latest". Every line carries its cursor (SSE id): after a dropped
  // connection or a tab the browser froze, the stream resumes after the last line shown
  // (the browser's own retry sends Last-Event-ID; a reconnect made here sends ?after=),
  // so no line is shown twice. A text filter hides the lines that do not match.
  const MAX_LINES = 5000;
  const NEAR_BOTTOM_PX = 24;
  const RECONNECT_MS = 3000;
  const MAX_RECONNECTS = 5;

  function followLogs(panel) {
    const view = panel.querySelector("[data-log-view]");
    const state = panel.querySelector("[data-log-state]");
    const pauseButton = panel.querySelector("[data-log-pause]");
    const form = panel.querySelector("[data-log-form]");
    const download = panel.querySelector("[data-log-download]");
    const jump = panel.querySelector("[data-log-jump]");
    const filterInput = panel.querySelector("[data-log-filter]");
    const matchCount = panel.querySelector("[data-log-matches]");
    let source = null;
    let buffer = [];
    let isPaused = false;
    let following = true;
    let unseen = 0;
    let lastId = "";
    let finished = false; // the stream ended for good (container gone, or gave up)
    let reconnects = 0;
    let retryTimer = null;
    let filterText = "";

    function setState(text, kind) {
      state.textContent = text;
      state.className = "live-dot" + (kind ? " " + kind : "");
    }

    function nearBottom() {
      return view.scrollTop + view.clientHeight >= view.scrollHeight - NEAR_BOTTOM_PX;
    }

    function showJump() {
      jump.hidden = following;
      jump.textContent = unseen ? `Jump to latest (${unseen} new)` : "Jump to latest";
    }

    function toBottom() {
      view.scrollTop = view.scrollHeight;
      following = true;
      unseen = 0;
      showJump();
    }

    function matches(text) {
      return !filterText || text.toLowerCase().includes(filterText);
    }

    function countMatches() {
      if (!filterText) { matchCount.textContent = ""; return; }
      let shown = 0;
      view.childNodes.forEach((node) => { if (!node.hidden) shown += 1; });
      matchCount.textContent = `${shown} of ${view.childNodes.length} lines match`;
    }

    function append(line, className) {
      const span = document.createElement("span");
      if (className) span.className = className;
      span.textContent = line + "\n";
      span.hidden = !className && !matches(line);
      view.appendChild(span);
      if (view.childNodes.length > MAX_LINES) {
        // Dropping the oldest lines must not move what the reader is looking at.
        const before = view.scrollHeight;
        while (view.childNodes.length > MAX_LINES) view.firstChild.remove();
        if (!following) view.scrollTop -= before - view.scrollHeight;
      }
      if (following) {
        view.scrollTop = view.scrollHeight;
      } else if (!span.hidden) {
        unseen += 1;
        showJump();
      }
      if (filterText) countMatches();
    }

    function receive(message) {
      const id = message.lastEventId || "";
      // Cursors sort as text: a line at or before the last one shown was shown already.
      if (id && lastId && id <= lastId) return;
      if (id) lastId = id;
      if (isPaused) {
        buffer.push(message.data);
        if (buffer.length > MAX_LINES) buffer.shift();
        setState(`Paused · ${buffer.length} new line(s)`, "");
      } else {
        append(message.data);
      }
    }

    function stop() {
      if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
      if (source) { source.close(); source = null; }
    }

    function scheduleReconnect() {
      if (finished || retryTimer) return;
      if (reconnects >= MAX_RECONNECTS) {
        finished = true;
        setState("Disconnected", "err");
        return;
      }
      reconnects += 1;
      setState("Reconnecting…", "err");
      retryTimer = setTimeout(() => { retryTimer = null; connect(); }, RECONNECT_MS);
    }

    function connect() {
      stop();
      const tool = form.elements.tool.value;
      const tail = form.elements.tail.value;
      if (!tool) { setState("No tool selected", ""); return; }
      const base = panel.dataset.base + encodeURIComponent(tool) + "/logs";
      download.href = `${base}.txt?tail=${encodeURIComponent(tail)}`;
      download.removeAttribute("aria-disabled");
      let url = `${base}/stream?tail=${encodeURIComponent(tail)}`;
      if (lastId) url += `&after=${encodeURIComponent(lastId)}`;
      const current = new EventSource(url);
      source = current;
      panel.dataset.connections = String(Number(panel.dataset.connections || "0") + 1);
      setState(lastId ? "Resuming…" : "Connecting…", "");
      current.onopen = () => {
        reconnects = 0;
        setState(isPaused ? "Paused" : "Live", isPaused ? "" : "on");
      };
      current.onmessage = receive;
      current.addEventListener("failure", (message) => {
        stop();
        if (lastId) { // it was live before: the agent may be back in a moment
          scheduleReconnect();
          return;
        }
        append(message.data, "log-error");
        setState("Failed", "err");
        finished = true;
      });
      current.addEventListener("end", () => {
        append("— the log stream ended (the container stopped or was removed) —", "log-note");
        setState("Ended", "");
        finished = true;
        stop();
      });
      current.onerror = () => {
        if (source !== current) return;
        if (current.readyState === EventSource.CLOSED) {
          source = null;
          scheduleReconnect();
        } else {
          setState("Reconnecting…", "err"); // the browser retries with Last-Event-ID
        }
      };
    }

    function start() {
      // A new choice of tool or tail: start over with its tail.
      stop();
      buffer = [];
      lastId = "";
      finished = false;
      reconnects = 0;
      view.textContent = "";
      toBottom();
      countMatches();
      connect();
    }

    function resumeIfLost() {
      if (document.hidden || finished || source || retryTimer) return;
      if (!panel.isConnected) return;
      connect();
    }

    view.addEventListener("scroll", () => {
      following = nearBottom();
      if (following) unseen = 0;
      showJump();
    });
    jump.addEventListener("click", toBottom);
    filterInput.addEventListener("input", () => {
      filterText = filterInput.value.trim().toLowerCase();
      view.childNodes.forEach((node) => {
        if (!node.className) node.hidden = !matches(node.textContent.replace(/\n$/, ""));
      });
      countMatches();
      if (following) view.scrollTop = view.scrollHeight;
    });
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
    form.addEventListener("change", (event) => {
      if (event.target === filterInput) return;
      start();
    });
    form.addEventListener("submit", (event) => { event.preventDefault(); start(); });
    // Back from the background, from a frozen page or from offline: pick up where it was.
    document.addEventListener("visibilitychange", resumeIfLost);
    window.addEventListener("pageshow", resumeIfLost);
    window.addEventListener("online", resumeIfLost);
    document.addEventListener("resume", resumeIfLost);
    // htmx removes the panel when another tab is chosen: close the stream with it.
    panel.addEventListener("htmx:beforeCleanupElement", () => { finished = true; stop(); });
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
