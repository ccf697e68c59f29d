"""A hostile web page, open in the user's Chromium while the local AWS endpoint runs, gets nothing from it.

The attacker's page is served from another loopback port (a different origin of the same site, as any
local dev server or a page reached through it would be); a DNS-rebound name is simulated with Chromium's
host resolver rules.
"""
from __future__ import annotations

import contextlib
import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests

from sightfleet.config import Settings
from sightfleet.resources import Resources, provision
from tests.browser import chromium, requires_chromium, screenshot
from tests.support import start_moto, unique_prefix, wait_for

PHOTO = b"the victim's photo"
REBOUND = "rebound.test"
# What any page can append to an object's URL: a presigned URL's parameters with a made-up key and signature
# (moto checks neither, and it read the photo back to the page with `Access-Control-Allow-Origin: *`).
FORGED_PRESIGN = ("?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=anyone%2F20261206%2Fus-east-1%2Fs3%2F"
                  "aws4_request&X-Amz-Date=20261206T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
                  "&X-Amz-Signature=00")
# The attacker's page: it tries to read an object (unsigned, and with a forged presigned query) and moto's data
# dump, and to wipe the endpoint with a POST
# that needs no answer (no-cors), then shows what it got.
PROBE_PAGE = """<!doctype html><html><body><h1>Attacker</h1><pre id="out">probing</pre><script>
async function probe(url, options) {
  try { const reply = await fetch(url, options); const text = await reply.text();
        return "read " + reply.status + " " + text.slice(0, 60); }
  catch (error) { return "blocked " + error.name; }
}
(async () => {
  const got = {};
  got.object = await probe(OBJECT_URL);
  got.forged = await probe(OBJECT_URL + FORGED);
  got.dump = await probe(AWS + "/moto-api/data.json");
  got.reset = await probe(AWS + "/moto-api/reset", {method: "POST", mode: "no-cors"});
  document.getElementById("out").textContent = JSON.stringify(got, null, 1);
  window.results = got;
})();
</script></body></html>"""
# A form that submits itself to moto's reset: a top-level navigation, which CORS never stops.
FORM_PAGE = """<!doctype html><html><body><form id="f" method="POST" action="{action}">
<input type="hidden" name="x" value="1"></form><script>document.getElementById("f").submit();</script>
</body></html>"""


@contextlib.contextmanager
def attacker_site(pages: dict[str, str]):
    """A web server on another loopback port serving the given pages; yields its base URL."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "not here").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def victim():
    """An endpoint of its own (a reset that got through must not hurt other tests) holding one owner's photo."""
    proc, aws = start_moto()
    settings = Settings(endpoint_url=aws, prefix=unique_prefix("victim"))
    provision(settings)
    resources = Resources.connect(settings)
    resources.outputs.put("owner-1/photo.jpg", PHOTO, "image/jpeg")
    yield aws, resources, f"{aws}/{settings.names.output_bucket}/owner-1/photo.jpg"
    proc.terminate()
    proc.wait(timeout=10)


@requires_chromium
def test_a_page_on_another_port_can_neither_read_nor_reset_the_endpoint(victim):
    aws, resources, object_url = victim
    pages = {"/": PROBE_PAGE.replace("OBJECT_URL", json.dumps(object_url)).replace("AWS", json.dumps(aws))
             .replace("FORGED", json.dumps(FORGED_PRESIGN)),
             "/form": FORM_PAGE.format(action=html.escape(aws + "/moto-api/reset"))}
    port = urlsplit(aws).port
    with attacker_site(pages) as site, chromium(f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1") as driver:
        driver.get(site + "/")
        got = wait_for(lambda: driver.execute_script("return window.results"), 20, what="the attacker's probes")
        screenshot(driver, "endpoint-attacker-page")
        driver.get(site + "/form")
        wait_for(lambda: driver.current_url.startswith(aws), 20, what="the form to post itself to the endpoint")
        reset_answer = driver.find_element("tag name", "body").text
        driver.get(f"http://{REBOUND}:{port}{urlsplit(object_url).path}")   # DNS rebinding: the page's own origin
        rebound_answer = driver.find_element("tag name", "body").text
        screenshot(driver, "endpoint-rebound-page")
    assert got["object"] == got["forged"] == got["dump"] == "blocked TypeError", got
    assert "AccessDenied" in reset_answer and "InvalidHost" in rebound_answer, (reset_answer, rebound_answer)
    assert PHOTO.decode() not in json.dumps(got) + rebound_answer
    # What the page sent blind (no-cors) was refused by the endpoint: the photo and the rest are as they were.
    assert resources.outputs.get("owner-1/photo.jpg") == PHOTO
    # The endpoint itself refused the page's reads, not only the browser's CORS check.
    for url in (object_url, object_url + FORGED_PRESIGN):
        replayed = requests.get(url, headers={"Origin": site, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
                                timeout=10)
        assert replayed.status_code == 403 and PHOTO not in replayed.content
