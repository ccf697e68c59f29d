"""Pages for people: upload, album gallery, one image's result; live updates come from static/live.js."""
from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for

from sightfleet.contracts import DEFAULT_ALBUM, FINAL_STATUSES, STATUSES, clean_album
from sightfleet.errors import Unavailable
from sightfleet.features import effective_features
from sightfleet.findterms import HELD, term_key
from web_tier.api import delete_album, listed_images, page_limit
from web_tier.csrf import csrf_token, require_csrf
from web_tier.features import CHOOSABLE, FEATURE_NAMES, account_default, upload_features
from web_tier.owners import caller, delete_one, listing_owner, stored_row, visible_result
from web_tier.present import encode_cursor, present
from web_tier.query import album_filter, search_term, status_filter
from web_tier.reservations import reserve_images
from web_tier.services import albums, resources, services, settings, submitter
from web_tier.submit import Rejected, Upload, check_part_count, safe_filename, uploads_from_parts

bp = Blueprint("pages", __name__)


@bp.app_context_processor
def inject():
    return {"csrf_token": csrf_token, "final_statuses": FINAL_STATUSES, "statuses": STATUSES,
            "feature_names": FEATURE_NAMES}


def image_origin() -> str:
    """Where presigned image URLs point (S3, or the local endpoint); presigning needs no network."""
    shared = services()
    if shared.image_origin is None:
        url = urlsplit(resources().outputs.presigned_url("probe", 60))
        shared.image_origin = f"{url.scheme}://{url.netloc}"
    return shared.image_origin


def upload_page(outcomes: list | None = None, status: int = 200):
    limits = {"max_upload_mb": settings().max_upload_mb, "max_upload_bytes": settings().max_upload_bytes}
    album = _usable_album(request.values.get("album"))
    chosen = effective_features(None, account_default(), settings().default_features, settings().moderation)
    return render_template("index.html", albums=albums().choices(album, caller().owner), album=album,
                           outcomes=outcomes or [], features=CHOOSABLE, chosen=chosen,
                           moderation=settings().moderation, **limits), status


def _usable_album(name: str | None) -> str:
    """The album a page link asked for, or the default album when that cannot be an album name."""
    try:
        return clean_album(name)
    except ValueError:
        return DEFAULT_ALBUM


@bp.get("/")
def index():
    return upload_page()


@bp.post("/upload")
def upload():
    """The form fallback for browsers without JavaScript; the page itself posts to the JSON API."""
    require_csrf()
    album = (request.form.get("new_album") or "").strip() or request.form.get("album")
    files = [f for f in request.files.getlist("file") if f.filename]
    if not files:
        return upload_page([{"filename": "", "error": "choose one or more JPEG or PNG files first"}], 400)
    check_part_count(files)
    reserve_images(caller().owner, len(files))
    features = upload_features()
    uploads = [replace(upload, features=features)
               for upload in uploads_from_parts(files, album, caller().owner, submitter().max_bytes)]
    outcomes = [_submit_one(upload) for upload in uploads]
    if all(o["image"] for o in outcomes):
        return redirect(url_for("pages.gallery", album=outcomes[0]["image"]["album"]), code=303)
    return upload_page(outcomes, 200 if any(o["image"] for o in outcomes) else 400)


def _submit_one(upload: Upload) -> dict:
    """One file's outcome, shown next to its (made safe) name: the accepted image or why it was refused."""
    shown = safe_filename(upload.filename)
    try:
        accepted = submitter().submit(upload)
    except Rejected as exc:
        return {"filename": shown, "image": None, "error": exc.message}
    return {"filename": shown, "image": present(accepted), "error": None}


@bp.get("/gallery")
def gallery():
    """One album's (every album's) photos, newest first; with a search (label, text, faces, color, held), those
    it finds. The search box takes `text:carson`, `color:red`, `faces`, `faces:2`, `held` or a label."""
    typed = box_search(request.args.get("label", ""))
    if typed:   # the box's prefixed words become the listing's own parameters
        return redirect(url_for("pages.gallery", **{**request.args.to_dict(), "label": None, **typed}), code=303)
    items, next_key = listed_images()
    album, status, owner, limit = album_filter(), status_filter(), listing_owner(), page_limit()
    term = search_term()   # listed_images checked it
    search = {term.param: term.value} if term else {}
    # The owner as asked (an admin's ?owner=), so every link of the page keeps listing the same owner's.
    shown_owner = request.args.get("owner") or None
    query = {"album": album, "status": status, "cursor": request.args.get("cursor"), "owner": shown_owner, **search}
    return render_template(
        "gallery.html", images=[present(r) for r in items], album=album, status=status, search=search,
        searched=term.described if term else None, box=_box_text(term),
        albums=albums().choices(album, owner), owner=shown_owner, own=owner == caller().owner,
        cursor=query["cursor"], next_cursor=encode_cursor(next_key), suggestions=label_suggestions(owner),
        held_count=0 if owner is None else resources().labels.term_count(owner, term_key(HELD)),
        live_url=url_for("api.list_images", limit=limit, **{k: v for k, v in query.items() if v}))


def box_search(text: str) -> dict:
    """The listing parameters a search box's prefixed words stand for ({} for a label or nothing)."""
    word, _, value = text.strip().partition(":")
    name = {"text": "text", "color": "color", "colour": "color", "faces": "faces", "held": "held"}.get(word.lower())
    if name is None or (value == "" and name not in ("faces", "held")):
        return {}
    return {name: value.strip() or "true"}


def _box_text(term) -> str:
    """The search as the box shows it again."""
    if term is None:
        return ""
    if term.param == "label":
        return term.value
    return term.param if term.value.lower() == "true" else f"{term.param}:{term.value}"


def label_suggestions(owner: str | None) -> list[str]:
    """The search box's suggestions: the owner's own labels, most frequent first (none for every owner's)."""
    return [] if owner is None else [c["name"] for c in resources().labels.counts(owner)]


@bp.get("/images/<image_id>")
def image_page(image_id: str):
    return render_template("image.html", image=present(visible_result(image_id)))


@bp.post("/images/<image_id>/delete")
def delete_image_page(image_id: str):
    """The image page's delete button: delete, then back to the album."""
    require_csrf()
    doc = stored_row(image_id)
    delete_one(doc)   # a failure part-way answers 503 (errors.py); pressing again finishes
    return redirect(url_for("pages.gallery", album=doc.get("album")), code=303)


@bp.post("/albums/<name>/delete")
def delete_album_page(name: str):
    """The gallery's delete-album button: every photo of the caller's album (an admin's: ?owner=)."""
    require_csrf()
    owner = listing_owner()
    album = _usable_album(name)
    if owner is None or album != name:
        raise Rejected(400, "BAD_ALBUM", "choose one owner's album to delete")
    _, problem = delete_album(owner, album)
    if problem:
        raise Unavailable(f"album {album!r} of {owner} deleted in part: {problem}")
    return redirect(url_for("pages.gallery", owner=request.args.get("owner")), code=303)
