// The upload page: drop or pick many photos; each goes to POST /api/images in a request of its own,
// so every file gets its own progress bar and its own error. The server decides what it accepts;
// the size check here only spares a pointless upload. File names are set with textContent only.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) { return; }  // the plain form still works
  var input = document.getElementById("files");
  var zone = document.getElementById("dropzone");
  var list = document.getElementById("uploads");
  var panel = document.getElementById("uploads-panel");
  var summary = document.getElementById("upload-summary");
  var galleryLink = document.getElementById("gallery-link");
  var rowTemplate = document.getElementById("upload-row");
  var albumSelect = document.getElementById("album");
  var newAlbum = document.getElementById("new-album");
  var token = form.elements.csrf_token.value;
  var maxBytes = Number(form.dataset.maxBytes);
  var PARALLEL = 3;
  var MAX_RETRIES = 3;
  var waiting = [];
  var active = 0;
  var counts = { queued: 0, failed: 0, total: 0 };

  form.classList.add("enhanced");  // choosing files starts the upload: no button needed

  // The features ticked on the form; none ticked sends none (then the account's default applies).
  function chosenFeatures() {
    return Array.prototype.filter.call(form.querySelectorAll("input[name=features]"), function (box) {
      return box.checked;
    }).map(function (box) { return box.value; });
  }

  function album() { return newAlbum.value.trim() || albumSelect.value; }

  function megabytes(bytes) {
    var mb = bytes / 1048576;
    return (mb < 1 ? mb.toFixed(2) : mb.toFixed(1)) + " MB";
  }

  function setState(row, state, text) {
    row.className = "upload-row " + state;
    row.querySelector(".state").textContent = text;
  }

  function showSummary() {
    var pending = counts.total - counts.queued - counts.failed;
    var parts = [counts.queued + " of " + counts.total + " uploaded"];
    if (counts.failed) { parts.push(counts.failed + " refused"); }
    if (pending) { parts.push(pending + " in progress"); }
    summary.textContent = parts.join(" · ");
  }

  function fail(row, message) {
    counts.failed++;
    setState(row, "failed", message);
    row.querySelector("progress").hidden = true;
    showSummary();
  }

  function accepted(job, image) {
    counts.queued++;
    setState(job.row, "done", "queued for recognition");
    job.row.querySelector("progress").value = 100;
    var link = job.row.querySelector(".view");
    link.href = image.page_url;
    link.hidden = false;
    var gallery = new URL(form.dataset.galleryUrl, window.location.href);
    gallery.searchParams.set("album", image.album);
    galleryLink.href = gallery.pathname + gallery.search;
    showSummary();
  }

  function addFiles(files) {
    Array.prototype.forEach.call(files, function (file) {
      var row = rowTemplate.content.firstElementChild.cloneNode(true);
      row.querySelector(".name").textContent = file.name;
      row.querySelector(".name").title = file.name;
      row.querySelector(".size").textContent = megabytes(file.size);
      list.appendChild(row);
      counts.total++;
      if (file.size > maxBytes) {
        fail(row, "too large: " + megabytes(file.size) + "; the limit is " + form.dataset.maxMb + " MB");
        return;
      }
      setState(row, "waiting", "waiting");
      waiting.push({ file: file, row: row, album: album(), tries: 0 });
    });
    panel.hidden = false;
    showSummary();
    pump();
  }

  function pump() {
    while (active < PARALLEL && waiting.length) { send(waiting.shift()); }
  }

  function finished() {
    active--;
    pump();
  }

  function retryLater(job, seconds) {
    job.tries++;
    setState(job.row, "waiting", "service busy; retrying in " + seconds + " s");
    setTimeout(function () { waiting.unshift(job); pump(); }, seconds * 1000);
  }

  function onReply(job, xhr) {
    var reply = xhr.response || {};
    if ((xhr.status === 202 || xhr.status === 200) && reply.images && reply.images.length) {
      accepted(job, reply.images[0]);
    } else if (xhr.status === 503 && job.tries < MAX_RETRIES) {
      retryLater(job, Math.min(Number(xhr.getResponseHeader("Retry-After")) || 5, 30));
    } else {
      fail(job.row, (reply.error && reply.error.message) || "the server answered " + xhr.status);
    }
  }

  function send(job) {
    active++;
    var xhr = new XMLHttpRequest();
    var body = new FormData();
    var bar = job.row.querySelector("progress");
    body.append("file", job.file, job.file.name);
    chosenFeatures().forEach(function (name) { body.append("features", name); });
    xhr.open("POST", form.dataset.apiUrl + "?album=" + encodeURIComponent(job.album));
    xhr.setRequestHeader("X-CSRF-Token", token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.onprogress = function (event) {
      if (event.lengthComputable) { bar.value = Math.round(100 * event.loaded / event.total); }
    };
    xhr.onload = function () { onReply(job, xhr); finished(); };
    xhr.onerror = function () { fail(job.row, "network error: the upload did not reach the server"); finished(); };
    setState(job.row, "uploading", "uploading");
    xhr.send(body);
  }

  input.addEventListener("change", function () {
    addFiles(input.files);
    input.value = "";  // the same file can be chosen again
  });
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "dragend"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) { addFiles(event.dataTransfer.files); }
  });
})();
