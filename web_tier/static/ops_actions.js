// The operator actions of /ops: buttons and forms that call /api/ops/*, the alerts banner, the audit
// trail and what each worker is doing. Server text goes in through textContent only.
"use strict";

(function () {
  const root = document.getElementById("ops");
  const result = document.getElementById("action-result");

  function $(id) { return document.getElementById(id); }

  const cells = window.sightfleetOps.row;
  const fill = window.sightfleetOps.fillTable;

  function describe(body) {
    if (body.action === undefined) return body.paused ? "processing paused" : "processing runs";
    let text = body.action + ": " + body.done + " done";
    const skipped = Object.entries(body.skipped || {}).map(([why, n]) => n + " " + why);
    if (skipped.length) text += "; skipped " + skipped.join(", ");
    if (body.left) text += "; left " + JSON.stringify(body.left);
    return text;
  }

  async function act(url, method, payload) {
    result.textContent = "working…";
    const reply = await fetch(url, {
      method: method, cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": root.dataset.csrf },
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
    const body = await reply.json().catch(() => ({}));
    result.textContent = reply.ok ? describe(body) : "refused: " + ((body.error && body.error.message) || reply.status);
    result.classList.toggle("error", !reply.ok);
  }

  function formPayload(form) {
    const payload = {};
    for (const field of form.elements) {
      if (!field.name || field.value === "") continue;
      payload[field.name] = field.type === "number" ? Number(field.value) : field.value;
    }
    return payload;
  }

  document.querySelectorAll("button[data-action]").forEach(button => {
    button.addEventListener("click", () => act(button.dataset.url, "POST"));
  });
  for (const id of ["retry-form", "redrive-form", "purge-form", "fleet-form"]) {
    const form = $(id);
    form.addEventListener("submit", event => {
      event.preventDefault();
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      act(form.dataset.url, id === "fleet-form" ? "PATCH" : "POST", formPayload(form));
    });
  }

  function drawAlerts(alerts) {
    $("alerts").replaceChildren(...alerts.map(a => {
      const p = document.createElement("p");
      p.className = "alert " + a.name;
      p.textContent = a.message;
      return p;
    }));
  }

  function drawControl(control) {
    $("processing-state").textContent = "processing: " + (control.paused
      ? "paused by " + (control.paused_by || "?") + " since " + control.paused_at : "running");
    const e = control.effective, d = control.deployed;
    $("fleet-deployed").textContent = "in force: " + e.min_instances + "–" + e.max_instances + ", pool " +
      e.warm_pool_size + ", idle " + e.idle_grace_s + " s (deployed: up to " + d.max_instances + ")";
  }

  function drawAudit(audit) {
    fill("audit", "audit-empty", audit.map(a => cells([
      new Date(a.at).toLocaleString([], { hour12: false }), a.who, a.action, String(a.count),
      JSON.stringify(a.details || {}),
    ])));
  }

  async function drawDoing() {
    const reply = await fetch(root.dataset.workersUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!reply.ok) return;
    const doc = await reply.json();
    fill("doing", "doing-empty", doc.workers.map(w => cells([
      w.instance_id, w.state, w.stage || "–",
      w.holding.length
        ? w.holding.length + " (" + w.longest_held_s + " s): " + w.holding.map(h => h.id).join(", ") : "–",
      w.cpu_percent === null || w.cpu_percent === undefined ? "–" : w.cpu_percent + " %",
      w.rss_mb ? w.rss_mb + " MB" : "–",
      Object.entries(w.model_versions || {}).map(([k, v]) => k + " " + v).join(", ") || "–",
    ], w.outlier ? "outlier" : "")));
  }

  // A held photo's row: a link to its page (an admin may see it), its owner, when, why, and a release button.
  function reviewRow(image) {
    const link = document.createElement("a");
    link.href = image.page_url;
    link.textContent = image.filename || image.id;
    const why = (image.moderation_labels || []).map(l => l.Name + " " + Math.round(l.Confidence) + " %").join(", ");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "release";
    button.textContent = "Release";
    button.addEventListener("click", () => act(root.dataset.releaseUrl, "POST", { image_id: image.id })
      .then(() => drawReview()));
    const row = cells(["", image.owner || "–", new Date(image.submitted_at).toLocaleString([], { hour12: false }),
      why || "–", ""]);
    row.cells[0].replaceChildren(link);
    row.cells[4].replaceChildren(button);
    return row;
  }

  async function drawReview() {
    const reply = await fetch(root.dataset.reviewUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!reply.ok) return;
    const doc = await reply.json();
    $("review-waiting").textContent = doc.waiting ? "(" + doc.waiting + " waiting)" : "";
    fill("review", "review-empty", doc.images.map(reviewRow));
  }

  document.addEventListener("ops:summary", event => {
    const sum = event.detail;
    drawAlerts(sum.alerts || []);
    if (sum.control) drawControl(sum.control);
    drawAudit(sum.audit || []);
    drawDoing().catch(() => {});
    drawReview().catch(() => {});
  });
})();
