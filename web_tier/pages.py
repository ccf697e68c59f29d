"""Pages for people: upload form, recent images, one image's result."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for

from sightfleet.contracts import is_image_id
from web_tier.csrf import csrf_token, require_csrf
from web_tier.present import present
from web_tier.services import resources, settings, submitter
from web_tier.submit import Rejected, Upload

bp = Blueprint("pages", __name__)


@bp.app_context_processor
def inject_csrf():
    return {"csrf_token": csrf_token}


@bp.get("/")
def index():
    recent, _ = resources().results.list(limit=20)
    return render_template("index.html", recent=[present(r) for r in recent],
                           max_upload_mb=settings().max_upload_mb)


@bp.post("/upload")
def upload():
    require_csrf()
    files = [f for f in request.files.getlist("file") if f.filename]
    if not files:
        return render_template("index.html", recent=[], error="choose a JPEG or PNG file first",
                               max_upload_mb=settings().max_upload_mb), 400
    try:
        accepted = [submitter().submit(Upload(f.read(), f.filename, request.form.get("album"))) for f in files]
    except Rejected as exc:
        return render_template("index.html", recent=[], error=exc.message,
                               max_upload_mb=settings().max_upload_mb), exc.status
    return redirect(url_for("pages.image_page", image_id=accepted[0]["id"]), code=303)


@bp.get("/images/<image_id>")
def image_page(image_id: str):
    if not is_image_id(image_id):
        abort(404)
    return render_template("image.html", image=present(resources().results.get(image_id)))
