// Live status on the image page: poll the JSON API with backoff until the result is final.
(function () {
  const url = document.getElementById("image-script").dataset.statusUrl;
  const final = new Set(["SUCCEEDED", "FAILED"]);
  let delay = 500;

  function render(image) {
    const status = document.getElementById("status");
    status.textContent = image.status;
    status.className = "badge " + image.status.toLowerCase();
    document.getElementById("top-label").textContent = image.top_label || "";
    document.getElementById("error").textContent = image.error ? image.error.code + ": " + image.error.message : "";
    if (image.annotated_url) {
      const img = document.getElementById("annotated");
      img.src = image.annotated_url;
      img.hidden = false;
    }
    const body = document.querySelector("#labels tbody");
    body.replaceChildren(...image.labels.map(function (label) {
      const row = document.createElement("tr");
      [label.Name, label.Confidence.toFixed(1) + "%", label.Source || ""].forEach(function (text) {
        const cell = document.createElement("td");
        cell.textContent = text;  // textContent: user and model text is never parsed as HTML
        row.appendChild(cell);
      });
      return row;
    }));
  }

  function poll() {
    fetch(url).then(function (r) { return r.json(); }).then(function (image) {
      render(image);
      if (!final.has(image.status)) { delay = Math.min(delay * 1.5, 5000); setTimeout(poll, delay); }
    }).catch(function () { delay = Math.min(delay * 2, 10000); setTimeout(poll, delay); });
  }
  const current = document.getElementById("status").textContent;
  if (!final.has(current)) { setTimeout(poll, delay); }
})();
