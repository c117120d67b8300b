// DTMA console — history charts (System and Containers tabs), drawn with the vendored uPlot
// from /toolboxes/{id}/metrics. A null value is a gap in the line (the toolbox did not
// answer), never a zero. Hovering shows the time and each value in the chart's legend.
// No inline script (the Content-Security-Policy forbids it): everything is here.
"use strict";

(function () {
  const RANGE_KEY = "dtma.metrics.range";
  const RANGES = ["1h", "6h", "24h", "7d"];
  const HEIGHT = 150;
  const live = new Set(); // mounted [data-metrics] roots

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function chosenRange() {
    const stored = localStorage.getItem(RANGE_KEY);
    return RANGES.includes(stored) ? stored : "24h";
  }

  function bytes(value) {
    if (value == null) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let amount = value;
    let unit = 0;
    while (amount >= 1024 && unit < units.length - 1) { amount /= 1024; unit += 1; }
    return (unit ? amount.toFixed(1) : amount.toFixed(0)) + " " + units[unit];
  }

  function number(unit) {
    return (u, value) => (value == null ? "—" : value.toFixed(unit === "%" ? 1 : 2) + (unit ? " " + unit : ""));
  }

  function when(u, ts) {
    return ts == null ? "—" : new Date(ts * 1000).toLocaleString();
  }

  function axes(extra) {
    const stroke = css("--muted");
    const grid = { stroke: css("--border"), width: 1 };
    return [{ stroke, grid, ticks: grid }, { stroke, grid, ticks: grid, size: 56, ...extra }];
  }

  function nullCount(values) {
    return values.reduce((count, value) => count + (value == null ? 1 : 0), 0);
  }

  // One chart in `figure`: x = times, lines = [{label, values, stroke, scale, value}].
  function plot(figure, times, lines, axisList, scales, sync) {
    const data = [times].concat(lines.map((line) => line.values));
    figure.dataset.points = String(times.length);
    figure.dataset.gaps = String(Math.max(...lines.map((line) => nullCount(line.values)), 0));
    if (figure._plot) {
      // A refresh of the same chart: new data, same plot (the hover stays where it is).
      figure._plot.setData(data);
      return;
    }
    const target = figure.querySelector(".chart-plot");
    target.textContent = "";
    const options = {
      width: Math.max(target.clientWidth || figure.clientWidth, 200),
      height: HEIGHT,
      // Charts of one card share the cursor: hovering one shows the time in all of them.
      cursor: { drag: { x: false, y: false }, sync: { key: sync || "dtma" } },
      legend: { live: true },
      scales: { x: { time: true }, ...(scales || {}) },
      series: [{ label: "Time", value: when }].concat(lines.map((line) => ({
        label: line.label,
        stroke: line.stroke,
        width: 1.5,
        scale: line.scale || "y",
        value: line.value,
        spanGaps: false, // a null is a gap: the toolbox did not answer then
        points: { size: 4 },
      }))),
      axes: axisList,
    };
    figure._plot = new uPlot(options, data, target);
  }

  function drawSystem(root, answer) {
    const colours = { cpu_percent: css("--accent"), memory_percent: css("--ok"), disk_percent: css("--warn"), load_1m: css("--info") };
    root.querySelectorAll("[data-chart]").forEach((figure) => {
      const key = figure.dataset.chart;
      const points = answer.series[key] || [];
      const unit = figure.dataset.unit;
      const scales = unit === "%" ? { y: { range: [0, 100] } } : {};
      plot(figure, points.map((p) => p[0]), [{
        label: figure.dataset.label, values: points.map((p) => p[1]), stroke: colours[key], value: number(unit),
      }], axes({ values: (u, ticks) => ticks.map((t) => t + (unit ? " " + unit : "")) }), scales, "system");
    });
  }

  function drawTools(root, answer) {
    const box = root.querySelector("[data-tool-charts]");
    const names = Object.keys(answer.tools);
    box.querySelectorAll("[data-tool]").forEach((figure) => {
      if (!names.includes(figure.dataset.tool)) { if (figure._plot) figure._plot.destroy(); figure.remove(); }
    });
    const empty = box.querySelector("[data-no-tools]");
    if (!names.length && !empty) {
      const note = document.createElement("p");
      note.className = "muted";
      note.dataset.noTools = "1";
      note.textContent = "No tool instance reported CPU or memory in this range.";
      box.appendChild(note);
    } else if (names.length && empty) {
      empty.remove();
    }
    names.forEach((name) => {
      let figure = box.querySelector(`[data-tool="${CSS.escape(name)}"]`);
      if (!figure) {
        figure = document.createElement("figure");
        figure.className = "chart";
        figure.dataset.tool = name;
        const caption = document.createElement("figcaption");
        caption.textContent = name;
        const target = document.createElement("div");
        target.className = "chart-plot";
        figure.append(caption, target);
        box.appendChild(figure);
      }
      const series = answer.tools[name];
      const cpu = series.cpu_percent || [];
      const memory = series.memory_bytes || [];
      const stroke = css("--muted");
      const grid = { stroke: css("--border"), width: 1 };
      plot(figure, cpu.map((p) => p[0]), [
        { label: "CPU", values: cpu.map((p) => p[1]), stroke: css("--accent"), scale: "%", value: number("%") },
        { label: "Memory", values: memory.map((p) => p[1]), stroke: css("--ok"), scale: "mem", value: (u, v) => bytes(v) },
      ], [
        { stroke, grid, ticks: grid },
        { scale: "%", stroke, grid, ticks: grid, size: 52, values: (u, ticks) => ticks.map((t) => t + " %") },
        { scale: "mem", side: 1, stroke, grid: { show: false }, ticks: grid, size: 84, values: (u, ticks) => ticks.map(bytes) },
      ], {}, "tools");
    });
  }

  function showRange(root, range) {
    root.querySelectorAll("[data-range]").forEach((button) => {
      button.setAttribute("aria-pressed", button.dataset.range === range ? "true" : "false");
    });
  }

  function load(root) {
    const range = chosenRange();
    showRange(root, range);
    const status = root.querySelector("[data-chart-status]");
    root.dataset.state = "loading";
    return fetch(`${root.dataset.src}?range=${encodeURIComponent(range)}`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    })
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(`HTTP ${response.status}`))))
      .then((answer) => {
        if (!root.isConnected) return;
        if (root.dataset.kind === "tools") drawTools(root, answer); else drawSystem(root, answer);
        const every = answer.step_seconds ? `a point per ${answer.step_seconds} s` : "each sample";
        status.textContent = `Last ${answer.range}, ${every} · updated ${new Date().toLocaleTimeString()}`;
        root.dataset.range = answer.range;
        root.dataset.state = "ready";
      })
      .catch((error) => {
        status.textContent = `Could not load the history (${error.message}).`;
        root.dataset.state = "error";
      });
  }

  function mount(root) {
    if (root.dataset.mounted) return;
    root.dataset.mounted = "1";
    live.add(root);
    root.addEventListener("click", (event) => {
      const button = event.target.closest("[data-range]");
      if (!button) return;
      localStorage.setItem(RANGE_KEY, button.dataset.range);
      live.forEach((other) => { if (other.isConnected) load(other); });
    });
    load(root);
  }

  function forget() {
    live.forEach((root) => {
      if (root.isConnected) return;
      root.querySelectorAll("figure").forEach((figure) => { if (figure._plot) figure._plot.destroy(); });
      live.delete(root);
    });
  }

  htmx.onLoad((element) => {
    forget();
    if (element.matches && element.matches("[data-metrics]")) mount(element);
    element.querySelectorAll && element.querySelectorAll("[data-metrics]").forEach(mount);
  });

  // The page's auto-refresh tick (console.js) also reloads the charts.
  document.body.addEventListener("dtma:refresh", () => {
    forget();
    live.forEach(load);
  });

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      live.forEach((root) => root.querySelectorAll("figure").forEach((figure) => {
        const target = figure.querySelector(".chart-plot");
        if (figure._plot && target) figure._plot.setSize({ width: Math.max(target.clientWidth, 200), height: HEIGHT });
      }));
    }, 150);
  });
})();
