// The ops dashboard: polls /api/ops/summary and /api/ops/timeseries, redraws with Plotly.react.
// Every piece of text from the server goes in through textContent, never innerHTML.
"use strict";

(function () {
  const root = document.getElementById("ops");
  const pollMs = Number(root.dataset.pollMs) || 3000;
  const select = document.getElementById("window");
  const COLORS = { visible: "#2f6fed", inFlight: "#f59e0b", dead: "#dc2626", desired: "#6b7280",
                   running: "#16a34a", completed: "#2f6fed", p50: "#0891b2", p95: "#7c3aed", failed: "#dc2626" };
  let timer = null;
  let inFlight = false;

  function $(id) { return document.getElementById(id); }

  function setText(id, text) { $(id).textContent = text; }

  function number(value, digits) {
    if (value === null || value === undefined) return "–";
    return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 1 : digits });
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function millis(ms) {
    if (ms === null || ms === undefined) return "–";
    return ms >= 1000 ? number(ms / 1000, 2) + " s" : number(ms, 0) + " ms";
  }

  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "–";
  }

  function toSeconds(values) { return values.map(v => (v === null ? null : v / 1000)); }

  // ---- charts -------------------------------------------------------------------------------

  function layout(ts, yTitle, extra) {
    return Object.assign({
      margin: { l: 48, r: 12, t: 8, b: 32 }, height: 230, showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.18 }, uirevision: select.value,
      xaxis: { type: "date", range: [new Date(ts.start), new Date(ts.end)], fixedrange: false },
      yaxis: { title: { text: yTitle }, rangemode: "tozero", zeroline: true, automargin: true },
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      modebar: { bgcolor: "rgba(255,255,255,0.8)", color: "#9ca3af", activecolor: "#2f6fed" },
    }, extra || {});
  }

  function step(x, y, name, color, extra) {
    return Object.assign({ x: x, y: y, name: name, type: "scatter", mode: "lines",
                           line: { shape: "hv", color: color, width: 2 }, connectgaps: false }, extra || {});
  }

  function bars(x, y, name, color) {
    return { x: x, y: y, name: name, type: "bar", marker: { color: color } };
  }

  function draw(id, traces, lay) {
    Plotly.react($(id), traces, lay, { displaylogo: false, responsive: true, displayModeBar: "hover",
                                       modeBarButtonsToRemove: ["select2d", "lasso2d"] });
  }

  function drawCharts(ts) {
    const x = ts.timestamps.map(t => new Date(t));
    const s = ts.series;
    draw("chart-queue", [
      step(x, s.queue_visible, "visible", COLORS.visible, { fill: "tozeroy" }),
      step(x, s.queue_in_flight, "in flight", COLORS.inFlight),
      step(x, s.dead_letter, "dead-letter", COLORS.dead),
    ], layout(ts, "messages"));
    draw("chart-instances", [
      step(x, s.instances_running, "running", COLORS.running, { fill: "tozeroy" }),
      step(x, s.instances_desired, "desired", COLORS.desired, { line: { shape: "hv", color: COLORS.desired,
                                                                        dash: "dash", width: 2 } }),
    ], layout(ts, "instances", { yaxis: { title: { text: "instances" }, rangemode: "tozero", dtick: 1 } }));
    draw("chart-throughput", [bars(x, s.completed_per_min, "completed / min", COLORS.completed)],
         layout(ts, "images / min"));
    draw("chart-latency", [
      step(x, toSeconds(s.latency_p50_ms), "p50", COLORS.p50, { mode: "lines+markers", line: { color: COLORS.p50 } }),
      step(x, toSeconds(s.latency_p95_ms), "p95", COLORS.p95, { mode: "lines+markers", line: { color: COLORS.p95 } }),
    ], layout(ts, "seconds"));
    draw("chart-failures", [bars(x, s.failed_per_min, "failed / min", COLORS.failed)],
         layout(ts, "images / min"));
    const w = ts.window_totals;
    setText("w-completed", number(w.completed, 0));
    setText("w-failed", number(w.failed, 0));
    setText("w-p50", millis(w.latency_p50_ms));
    setText("w-p95", millis(w.latency_p95_ms));
  }

  // ---- figures and tables -------------------------------------------------------------------

  function drawKpis(sum) {
    const i = sum.instances, q = sum.queue, t = sum.totals, r = sum.recent;
    setText("k-running", number(i.running, 0));
    setText("k-bounds", "of " + i.min + "–" + i.max);
    setText("k-pending", number(i.pending, 0));
    setText("k-pooled", number(i.pooled, 0));
    setText("k-desired", number(i.desired, 0));
    setText("k-visible", number(q.visible, 0));
    setText("k-inflight", number(q.in_flight, 0) + " in flight");
    setText("k-dead", number(q.dead_letter, 0));
    $("k-dead").classList.toggle("bad", q.dead_letter > 0);
    setText("k-rate", number(r.completed_per_min) + " /min");
    setText("k-latency", "p50 " + millis(r.latency_p50_ms) + " · p95 " + millis(r.latency_p95_ms));
    setText("k-processed", number(t.images_processed, 0));
    setText("k-failed", number(t.images_failed, 0) + " failed");
    setText("k-iseconds", number(t.instance_seconds, 0));
    setText("k-per-image", t.instance_seconds_per_image === null ? "– per image"
      : number(t.instance_seconds_per_image, 2) + " per image");
  }

  function row(cells, className) {
    const tr = document.createElement("tr");
    if (className) tr.className = className;
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = cell;
      td.title = cell;  // cells are cut with an ellipsis; the whole text shows on hover
      tr.appendChild(td);
    }
    return tr;
  }

  function fillTable(tableId, emptyId, rows) {
    $(tableId).tBodies[0].replaceChildren(...rows);
    $(emptyId).hidden = rows.length > 0;
  }

  // ops_actions.js draws its tables with the same two helpers.
  window.sightfleetOps = { row: row, fillTable: fillTable };

  function workerState(w) {
    const ec2 = w.ec2_state && !["running", "terminated"].includes(w.ec2_state);
    return ec2 ? w.state + " (" + w.ec2_state + ")" : w.state;
  }

  function drawWorkers(workers) {
    fillTable("workers", "workers-empty", workers.map(w => row([
      w.instance_id, workerState(w), clock(w.launched_at),
      duration(w.uptime_s), number(w.images_done, 0), number(w.images_failed, 0),
      w.heartbeat_age_s === null ? "–" : duration(w.heartbeat_age_s) + " ago",
      w.model_load_s === null ? "–" : number(w.model_load_s, 2) + " s",
      number(w.resumes, 0),
      w.last_resume_s === null ? "–" : number(w.last_resume_s, 2) + " s",
      w.current.length ? w.current.length + " message(s): " + w.current.join(", ") : "–",
    ], (w.live ? "live" : "ended") + " state-" + w.state.replace(/\W+/g, "-"))));
  }

  function drawDecisions(decisions) {
    fillTable("decisions", "decisions-empty", decisions.map(d => {
      const inp = d.inputs;
      return row([
        clock(d.at), number(inp.visible, 0) + " + " + number(inp.in_flight, 0),
        number(inp.running, 0) + " + " + number(inp.pending, 0), number(inp.target, 0),
        number(d.desired, 0), d.action,
      ], d.changed ? "changed" : "");
    }));
  }

  // ---- polling ------------------------------------------------------------------------------

  async function getJson(url) {
    const reply = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) throw new Error((body.error && body.error.message) || reply.status + " " + reply.statusText);
    return body;
  }

  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const tsUrl = root.dataset.timeseriesUrl + "?window=" + encodeURIComponent(select.value);
      const [sum, ts] = await Promise.all([getJson(root.dataset.summaryUrl), getJson(tsUrl)]);
      drawKpis(sum);
      document.dispatchEvent(new CustomEvent("ops:summary", { detail: sum }));  // ops_actions.js draws the rest
      drawWorkers(sum.workers);
      drawDecisions(sum.decisions);
      drawCharts(ts);
      setText("updated", "updated " + clock(sum.generated_at) + " · step " + ts.step_s + " s");
      setText("problem", "");
    } catch (err) {
      setText("problem", "figures unavailable (" + err.message + "); retrying");
    } finally {
      inFlight = false;
    }
  }

  function restart() {
    clearInterval(timer);
    refresh();
    timer = setInterval(refresh, pollMs);
  }

  select.addEventListener("change", () => {
    const url = new URL(window.location.href);
    url.searchParams.set("window", select.value);
    history.replaceState(null, "", url);
    restart();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) clearInterval(timer); else restart();
  });
  restart();
})();
