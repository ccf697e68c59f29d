"""The OpenAPI document: valid 3.1, complete over the app's JSON routes, and the API page works under the CSP."""
from __future__ import annotations

import threading

import pytest
import requests
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from tests.browser import chromium, requires_chromium, screenshot
from tests.support import free_port, wait_for
from web_tier import api, openapi

# The API for programs: everything under /api/ (but the API page and its files), and these.
API_PREFIX = "/api/"
NOT_API = {"openapi.docs_page", "openapi.docs_asset"}
API_OUTSIDE_PREFIX = {("get", "/healthz"), ("get", "/metrics"), ("post", "/")}
# Documented ahead of the views that the isolation work ("owners") adds.
PENDING = {("delete", "/api/images/{image_id}"), ("delete", "/api/albums/{name}")}
METHODS = ("get", "post", "put", "patch", "delete")


def documented(doc: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in METHODS if method in item}


def served(app) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route of the API the app serves (pages and their forms are not in it)."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_API:
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        routes = {(method.lower(), path) for method in rule.methods - {"HEAD", "OPTIONS"}}
        found |= routes if path.startswith(API_PREFIX) else routes & API_OUTSIDE_PREFIX
    return found


def test_document_is_valid_openapi_3_1(client):
    reply = client.get("/api/openapi.json")
    assert reply.status_code == 200 and reply.mimetype == "application/json"
    doc = reply.get_json()
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_a_broken_document_is_refused_by_the_validator(client):
    doc = client.get("/api/openapi.json").get_json()
    doc["paths"]["/api/images"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/NoSuchSchema"}
    with pytest.raises(Exception, match="NoSuchSchema"):
        validate(doc, cls=OpenAPIV31SpecValidator)


def test_every_route_is_documented_and_every_documented_route_is_served(app, client):
    doc = client.get("/api/openapi.json").get_json()
    assert served(app) - documented(doc) == set(), "routes missing from the document"
    assert documented(doc) - served(app) - PENDING == set(), "documented routes the app does not serve"


def test_limits_in_the_document_are_the_ones_the_views_enforce(settings_factory):
    from sightfleet.resources import Resources
    from web_tier import create_app
    settings = settings_factory(max_upload_mb=3)
    doc = create_app(settings, Resources.connect(settings)).test_client().get("/api/openapi.json").get_json()
    listing = {p["name"]: p["schema"] for p in doc["paths"]["/api/images"]["get"]["parameters"]}
    assert listing["limit"]["maximum"] == api.MAX_PAGE and listing["limit"]["default"] == api.DEFAULT_PAGE
    submit = {p["name"]: p["schema"] for p in doc["paths"]["/api/images"]["post"]["parameters"]}
    assert submit["wait"]["maximum"] == api.MAX_WAIT_S
    raw = doc["paths"]["/api/images"]["post"]["requestBody"]["content"]["image/jpeg"]["schema"]
    assert "up to 3 MB" in raw["description"]


def test_errors_are_documented_with_the_headers_they_carry(client):
    doc = client.get("/api/openapi.json").get_json()
    responses = doc["components"]["responses"]
    assert responses["Unavailable"]["headers"]["Retry-After"]["required"] is True
    assert responses["RateLimited"]["headers"]["Retry-After"]["required"] is True
    assert responses["Unauthenticated"]["headers"]["WWW-Authenticate"]["required"] is True
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "An API key, shown once when it is made"}
    ops = doc["paths"]["/api/ops/summary"]["get"]["responses"]
    assert {"401", "403", "429", "503"} <= set(ops)


def test_docs_page_loads_swagger_ui_from_here_with_no_inline_script(client):
    page = client.get("/api/docs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    version = openapi.swagger_ui()[1]
    assert f'src="/api/docs/{version}/swagger-ui-bundle.js"' in html and 'data-spec-url="/api/openapi.json"' in html
    assert "<script>" not in html and "https://" not in html  # no inline script, no CDN
    bundle = client.get(f"/api/docs/{version}/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and bundle.mimetype == "text/javascript"
    assert client.get(f"/api/docs/{version}/swagger-ui.css").mimetype == "text/css"
    assert client.get("/static/swagger-init.js").status_code == 200


def test_docs_assets_of_another_version_or_outside_the_folder_are_404(client):
    version = openapi.swagger_ui()[1]
    assert client.get("/api/docs/0.0.1/swagger-ui-bundle.js").status_code == 404
    assert client.get(f"/api/docs/{version}/..%2F__init__.py").status_code == 404
    assert client.get(f"/api/docs/{version}/no-such-file.js").status_code == 404


@pytest.fixture
def served_app(app):
    """The app on a free port, served by werkzeug in a thread."""
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@requires_chromium
def test_docs_page_renders_every_operation_in_chromium_without_policy_errors(served_app):
    doc = requests.get(served_app + "/api/openapi.json", timeout=10).json()
    with chromium() as driver:
        driver.get(served_app + "/api/docs")
        wait_for(lambda: driver.find_elements("css selector", ".opblock"), 30, what="Swagger UI to draw")
        shown = driver.find_elements("css selector", ".opblock")
        screenshot(driver, "api-docs")
        assert len(shown) == len(documented(doc))
        assert "Sightfleet API" in driver.find_element("css selector", ".info .title").text
        blocked = [entry["message"] for entry in driver.get_log("browser")
                   if "Content Security Policy" in entry["message"] or entry["level"] == "SEVERE"]
        assert blocked == []
