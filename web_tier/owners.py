"""Who may see which image: the caller's own, or every owner's for admins; anything else is "no such image".

Every route reads the row first and compares its owner afterwards, and a row the caller may not
see raises the very NoSuchResult a missing row raises: same 404, same body, same path through the
code, so no answer tells another owner's image from one that does not exist.
"""
from __future__ import annotations

import logging

from flask import abort, request

from sightfleet.contracts import DEFAULT_ALBUM, is_deleted, is_image_id, is_owner, owner_of
from sightfleet.deletion import delete_image
from sightfleet.errors import NoSuchResult, SightfleetError
from sightfleet.interfaces import EVERY_OWNER
from web_tier.identity import Principal, current_principal
from web_tier.reservations import release
from web_tier.services import albums, resources
from web_tier.submit import Rejected

log = logging.getLogger(__name__)
# `?owner=*`: an admin's listing of every owner's images (with those from before owners existed).
EVERY_OWNER_PARAM = "*"


def caller() -> Principal:
    """The request's principal; 401 when there is none (authentication answers first on every route)."""
    principal = current_principal()
    if principal is None:
        abort(401, description="sign in, or send an API key as `Authorization: Bearer <key>`")
    return principal


def may_see(principal: Principal, doc: dict) -> bool:
    """True when the principal may read (and delete) this row: an admin, or its owner."""
    return principal.admin or owner_of(doc) == principal.owner


def shown(doc: dict, principal: Principal | None = None) -> bool:
    """True for a live row the caller may see (tombstones of deleted images are nobody's)."""
    return not is_deleted(doc) and may_see(principal or caller(), doc)


def stored_row(image_id: str) -> dict:
    """The row of an image the caller may see, tombstone or not; NoSuchResult, as for a missing one, otherwise."""
    principal = caller()
    if not is_image_id(image_id):
        raise NoSuchResult("no such image")
    doc = resources().results.get(image_id)
    if not may_see(principal, doc):
        raise NoSuchResult("no such image")
    return doc


def visible_result(image_id: str) -> dict:
    """The result of a live image the caller may see; NoSuchResult (404) otherwise."""
    doc = stored_row(image_id)
    if is_deleted(doc):
        raise NoSuchResult("no such image")
    return doc


def listing_owner() -> str | None:
    """Whose images a listing shows: the caller's; for admins `?owner=<id>`, or `?owner=*` for every owner's."""
    principal = caller()
    asked = request.args.get("owner", "").strip()
    if not asked or asked == principal.owner:
        return principal.owner
    if not principal.admin:
        abort(403, description="only admins list other owners' images")
    if asked == EVERY_OWNER_PARAM:
        return EVERY_OWNER
    if not is_owner(asked):
        raise Rejected(400, "BAD_OWNER", "owner must be an account id, or * for every owner")
    return asked


def delete_owned(doc: dict) -> None:
    """Delete an image the caller may delete, and give its owner's quota one image back, once.

    The image is gone whatever the quota store says: a quota left one too high is logged, not undone.
    """
    def give_back() -> None:
        try:
            release(owner_of(doc))
        except SightfleetError as exc:
            log.error("quota: deleting image %s, but %s's count could not be lowered: %s", doc["id"], owner_of(doc),
                      exc)
    delete_image(resources(), doc, on_tombstoned=give_back)


def delete_one(doc: dict) -> None:
    """A route's delete of one image: delete_owned, then the album leaves the chooser if that was its last photo."""
    delete_owned(doc)
    albums().forget_if_empty(owner_of(doc), doc.get("album") or DEFAULT_ALBUM)
