"""The label vocabulary, published: GET /api/vocabulary (JSON) and /vocabulary (a page).

Public (auth.py: ANYONE), like the API's contract: it lists every label the service can return, with
parents, aliases, categories and thresholds, and holds nothing of anyone's. The app-wide per-caller
rate limit applies. The document changes only with the vocabulary's version, which is its ETag.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, make_response, render_template, request

from sightfleet.vocabulary import load_vocabulary

bp = Blueprint("vocabulary", __name__)
MAX_AGE_S = 3600


def _cached(response, version: str):
    """Cacheable for an hour, revalidated by the vocabulary's version."""
    response.set_etag(version)
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_S}"
    return response.make_conditional(request)


@bp.get("/api/vocabulary")
def vocabulary_json():
    """Every label with its parents (direct), ancestors, aliases, categories, threshold and priority."""
    vocabulary = load_vocabulary()
    return _cached(jsonify(vocabulary.to_dict()), vocabulary.version)


@bp.get("/vocabulary")
def vocabulary_page():
    """The same as a page, one row per label, sorted by name."""
    vocabulary = load_vocabulary()
    document = vocabulary.to_dict()
    page = render_template("vocabulary.html", version=document["version"], labels=document["labels"],
                           categories=document["categories"])
    return _cached(make_response(page), vocabulary.version)
