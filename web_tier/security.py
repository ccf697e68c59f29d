"""Security headers on every response the app gives: pages, JSON, text, errors, static files alike.

One policy for the whole app, so an answer that no blueprint styles (an error page, `POST /`'s text,
a 500) is as locked down as the upload page.
"""
from __future__ import annotations

from flask import Flask, g, request

# Two <style> elements that plotly.js (the ops dashboard's charts) makes, allowed by their hashes:
# an empty one that it then fills through CSSOM (which the policy does not govern once the element
# is allowed), and the fixed stylesheet of the map library it bundles. An empty <style> does
# nothing by itself, and only our own scripts can fill it. tests/test_security_headers.py checks in
# Chromium that no page meets a refusal, so a plotly upgrade that changes them shows there.
PLOTLY_STYLE_HASHES = ("'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
                       "'sha256-ji27qzEtxXZW+7dun6UwjHXJ18e6WAin1VvNtkzIE/o='")
# Pages load scripts and styles from here only, and images also from storage (presigned URLs).
_POLICY = ("default-src 'self'; img-src 'self' data: blob: {image_origin}; script-src 'self'; "
           f"style-src 'self' {' '.join(PLOTLY_STYLE_HASHES)}; "
           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# Two years, the preload list's minimum; sent only over HTTPS, where a browser honours it.
HSTS = "max-age=63072000; includeSubDomains"
REFERRER_POLICY = "same-origin"
# Files that are the same for everyone (scripts, styles): cacheable whoever asks for them.
SHARED_FILES = frozenset({"static", "ops.plotly", "openapi.docs_asset"})


def content_security_policy() -> str:
    """The policy of this app: its own origin, plus the storage origin for images."""
    from web_tier.pages import image_origin  # the pages know where their presigned images live
    return _POLICY.format(image_origin=image_origin())


def add_security_headers(response):
    """Set every header unless a view chose its own value."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy())
    headers.setdefault("Referrer-Policy", REFERRER_POLICY)
    # Answers echo user file names (JSON, CSE546 text): browsers must never reinterpret them as HTML.
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # frame-ancestors covers current browsers; X-Frame-Options the ones that predate it.
    headers.setdefault("X-Frame-Options", "DENY")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    principal = g.get("principal")
    if principal is not None and principal.via != "anonymous" and request.endpoint not in SHARED_FILES:
        # What a signed-in caller reads is theirs alone: no browser or shared cache may keep it.
        headers["Cache-Control"] = "no-store"
    return response


def install(app: Flask) -> None:
    """Add the headers to every response, error handlers' and unhandled 500s' included."""
    app.after_request(add_security_headers)
