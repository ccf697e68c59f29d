// Live regions (gallery grid, image page): poll the JSON API with backoff; when what it reports
// differs from what is shown, fetch this page again and swap in the changed items.
//
// Polling rather than server-sent events: behind gunicorn's gthread workers every open event
// stream would hold a thread that synchronous recognition requests need, and a poll works the
// same through any load balancer and any number of web instances. All markup comes from the
// server's escaping templates; nothing here builds HTML from strings.
(function () {
  "use strict";
  var FINAL = ["SUCCEEDED", "FAILED"];
  var FAST_MS = 1000;
  var region = document.querySelector("[data-live]");
  if (!region) { return; }
  var untilFinal = region.hasAttribute("data-live-until-final");
  // Once everything shown is final, a gallery still looks for new uploads, just less often.
  var SLOW_MS = untilFinal ? 5000 : 10000;
  var delay = FAST_MS;
  var timer = null;
  var busy = false;
  var stopped = false;

  function itemKey(id, status, updatedAt) { return id + "|" + status + "|" + updatedAt; }

  function shownKeys(root) {
    return Array.prototype.map.call(root.children, function (el) { return el.dataset.id + "|" + el.dataset.sig; });
  }

  function reportedKeys(data) {
    var items = data.images || [data];
    return items.map(function (i) { return itemKey(i.id, i.status, i.updated_at); });
  }

  function allFinal(data) {
    return (data.images || [data]).every(function (i) { return FINAL.indexOf(i.status) >= 0; });
  }

  // Keep nodes whose item did not change (no image reloads, no flicker); adopt the rest.
  function swapIn(fresh) {
    var kept = {};
    Array.prototype.forEach.call(region.children, function (el) { kept[el.dataset.id + "|" + el.dataset.sig] = el; });
    var next = Array.prototype.map.call(fresh.children, function (el) {
      return kept[el.dataset.id + "|" + el.dataset.sig] || document.adoptNode(el);
    });
    region.replaceChildren.apply(region, next);
    region.dispatchEvent(new CustomEvent("live:updated", { bubbles: true }));
  }

  function refresh() {
    return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (reply) {
        if (!reply.ok) { throw new Error("page answered " + reply.status); }
        return reply.text();
      })
      .then(function (html) {
        // DOMParser builds an inert document: no scripts run, nothing loads until adopted.
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
        if (fresh) { swapIn(fresh); }
      });
  }

  function poll() {
    timer = null;
    busy = true;
    fetch(region.dataset.live, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (reply) {
        // Deleted (here or in another tab): nothing will change any more, so stop asking.
        if (reply.status === 404) { stopped = true; busy = false; return null; }
        if (!reply.ok) { throw new Error("status answered " + reply.status); }
        return reply.json();
      })
      .then(function (data) {
        if (data === null) { return; }
        var changed = reportedKeys(data).join(",") !== shownKeys(region).join(",");
        var settle = changed ? refresh() : Promise.resolve();
        return settle.then(function () {
          delay = changed ? FAST_MS : Math.min(delay * 1.5, allFinal(data) ? SLOW_MS : 5000);
          stopped = untilFinal && allFinal(data);
          busy = false;
          schedule();
        });
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000);  // the service is busy or away: back off, keep trying
        busy = false;
        schedule();
      });
  }

  function schedule() {
    if (timer === null && !busy && !stopped && !document.hidden) { timer = setTimeout(poll, delay); }
  }

  // A hidden tab stops polling; coming back looks at once.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { return; }
    delay = FAST_MS;
    schedule();
  });

  stopped = untilFinal && Array.prototype.every.call(region.children, function (el) {
    return FINAL.indexOf(el.dataset.sig.split("|")[0]) >= 0;
  });
  schedule();
})();
