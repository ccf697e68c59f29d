"""A property-based fuzzer (schemathesis) over every operation of /api/openapi.json, against the live app.

The app runs on the local AWS endpoint (moto), served over HTTP on a free port. Every
generated request must get no 5xx, and every answer must conform to the document: a documented
status code, its content type, its body schema and its required headers. The figures (requests
per operation, failures) are printed at the end of the module and written to artifacts/fuzz.json.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_headers_conformance, response_schema_conformance, status_code_conformance)

import requests

from sightfleet.config import Settings
from sightfleet.memory import memory_resources
from sightfleet.resources import Resources, provision
from tests.support import bearer, free_port, jpeg_bytes, start_worker_process, unique_prefix
from tests.test_openapi import documented, served
from web_tier.accounts import Accounts

pytestmark = pytest.mark.slow  # property-based fuzzing

log = logging.getLogger(__name__)
# Examples per operation: about 60 s of CI for the whole module on this 2-core machine (every operation).
EXAMPLES_PER_OPERATION = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
FIGURES_PATH = Path(__file__).resolve().parents[1] / "artifacts" / "fuzz.json"
FIGURES = {"requests": Counter(), "statuses": Counter(), "failures": [], "seconds": 0.0}
# Generous, so the fuzzer explores the operations rather than the rate limit (tests/test_limits.py has that).
FUZZ_RATE_LIMIT = "100000/minute"
# Above a real recognition of the small images the fuzzer makes (POST / and ?wait= wait for it).
REQUEST_TIMEOUT_S = 60


def _document_and_routes() -> tuple[dict, set[tuple[str, str]]]:
    """The document of an app with default settings (for generating cases at collection time), and its routes."""
    from web_tier import create_app, openapi
    app = create_app(resources=memory_resources(Settings(rate_limit=FUZZ_RATE_LIMIT))[0])
    with app.app_context():
        return openapi.build_document(), served(app)


DOCUMENT, SERVED = _document_and_routes()
# Operations documented ahead of their views (see tests/test_openapi.py): fuzzed once they are served.
NOT_SERVED = documented(DOCUMENT) - SERVED


@pytest.fixture(scope="module")
def stack(moto_server, tmp_path_factory):
    """A provisioned stack with one real worker process, which finishes what the fuzzer gets accepted."""
    settings = Settings(endpoint_url=moto_server, prefix=unique_prefix("fuzz"), rate_limit=FUZZ_RATE_LIMIT,
                        secret_key="k" * 32)
    provision(settings)
    log_path = tmp_path_factory.mktemp("fuzz") / "worker.log"
    worker = start_worker_process(settings, "i-fuzz", log_path, SIGHTFLEET_IDLE_GRACE_S="3600")
    yield settings, worker, log_path
    worker.terminate()
    try:
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()


@pytest.fixture(scope="module")
def api_headers(stack) -> dict[str, str]:
    """Credentials every generated request carries: an admin's API key on the stack."""
    _, issued = Accounts(Resources.connect(stack[0]).accounts).create("fuzz-admin", admin=True)
    return bearer(issued.key)


@pytest.fixture(scope="module")
def served_url(stack, api_headers):
    """The app on that stack, served over HTTP by werkzeug in a thread, with one real result in it."""
    from werkzeug.serving import make_server

    from web_tier import create_app
    settings = stack[0]
    server = make_server("127.0.0.1", free_port(), create_app(settings, Resources.connect(settings)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    # A real photo first, so listings hold a SUCCEEDED result with labels, metadata and image links.
    seeded = requests.post(url + "/api/images", params={"wait": "60"}, timeout=90, headers=api_headers,
                           files={"file": ("chelsea.jpg", jpeg_bytes(scale=0.3), "image/jpeg")})
    assert seeded.status_code == 200 and seeded.json()["images"][0]["status"] == "SUCCEEDED", seeded.text
    yield url
    server.shutdown()


def test_the_contract_is_public_and_is_the_one_fuzzed(served_url):
    reply = requests.get(served_url + "/api/openapi.json", timeout=10)  # no credentials: anyone may read it
    assert reply.status_code == 200 and reply.json() == DOCUMENT


@pytest.fixture(scope="module", autouse=True)
def figures(request):
    """Report the run's figures once the module is done, however it ended."""
    started = time.monotonic()
    yield FIGURES
    FIGURES["seconds"] = round(time.monotonic() - started, 1)
    total = sum(FIGURES["requests"].values())
    summary = {"requests": total, "not_served": sorted(" ".join(op) for op in NOT_SERVED), "failures": len(FIGURES["failures"]), "seconds": FIGURES["seconds"],
               "per_operation": dict(FIGURES["requests"]), "statuses": dict(FIGURES["statuses"]),
               "failure_details": FIGURES["failures"][:50]}
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_PATH.write_text(json.dumps(summary, indent=1, sort_keys=True))
    line = (f"API fuzzer: {total} requests over {len(FIGURES['requests'])} operations in {FIGURES['seconds']} s, "
            f"{len(FIGURES['failures'])} failing; statuses {dict(sorted(FIGURES['statuses'].items()))}")
    log.info("%s", line)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


schema = schemathesis.openapi.from_dict(DOCUMENT)
for _method, _path in NOT_SERVED:
    schema = schema.exclude(method=_method.upper(), path=_path)


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_and_never_answers_5xx(case, served_url, api_headers):
    label = case.operation.label
    FIGURES["requests"][label] += 1
    try:
        response = case.call_and_validate(base_url=served_url, headers=api_headers, checks=CHECKS,
                                          timeout=REQUEST_TIMEOUT_S)
    except Exception as exc:
        FIGURES["failures"].append({"operation": label, "request": case.as_curl_command(), "why": str(exc)[:2000]})
        raise
    FIGURES["statuses"][f"{label} {response.status_code}"] += 1


def test_the_worker_survived_every_fuzzed_image(stack):
    _, worker, log_path = stack
    assert worker.poll() is None, log_path.read_text()[-3000:]
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
