"""`python -m controller ops ACTION`: the operators' actions from a shell, with progress on long work.

Whoever holds the stack's AWS credentials is its administrator, so the CLI asks for no API key; each
action is audited under `cli:<login name>` (or --as NAME) like the web tier's actions.
"""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys

from tqdm import tqdm

from sightfleet import operations
from sightfleet.config import settings_or_exit
from sightfleet.control import FLEET_FIELDS, Control
from sightfleet.errors import Invalid, SightfleetError
from sightfleet.resources import Resources

log = logging.getLogger("controller.ops")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m controller ops", description=__doc__.splitlines()[0])
    top.add_argument("--as", dest="who", default=None, help="the name audited (default: cli:<login name>)")
    sub = top.add_subparsers(dest="action", required=True)
    retry = sub.add_parser("retry", help="re-enqueue FAILED photos whose original is still stored")
    for name in ("code", "owner", "album", "since", "until"):
        retry.add_argument(f"--{name}")
    retry.add_argument("--limit", type=int, default=operations.MAX_RETRY)
    redrive = sub.add_parser("redrive", help="move dead letters back to the request queue")
    redrive.add_argument("--rate", type=float, default=10.0, help="messages per second (default 10)")
    redrive.add_argument("--limit", type=int, default=operations.MAX_MOVE)
    purge = sub.add_parser("purge", help="empty a queue; its photos are marked FAILED (PURGED)")
    purge.add_argument("queue", choices=operations.QUEUES)
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sub.add_parser("pause", help="pause processing (uploads still queue)")
    sub.add_parser("resume", help="resume processing")
    fleet = sub.add_parser("fleet", help="change fleet settings at run time ('deployed': back to the deployed value)")
    for name in FLEET_FIELDS:
        fleet.add_argument(f"--{name.replace('_', '-')}", dest=name)
    sub.add_parser("status", help="print the control state")
    return top


def _fleet_changes(args) -> dict:
    changes = {}
    for name in FLEET_FIELDS:
        raw = getattr(args, name)
        if raw is None:
            continue
        changes[name] = None if raw == "deployed" else (float(raw) if name == "idle_grace_s" else int(raw))
    return changes


def _with_progress(what: str, run):
    with tqdm(desc=what, unit="msg", file=sys.stderr) as bar:
        return run(bar.update)


def run(args, resources: Resources) -> dict:
    """Do one action; its report or state as a dict."""
    who = args.who or f"cli:{getpass.getuser()}"
    control = Control(resources.fleet_log)
    if args.action == "retry":
        flt = operations.RetryFilter(args.code, args.owner, args.album, args.since, args.until, args.limit)
        return _with_progress("retry", lambda p: operations.retry(resources, flt, who, p)).to_dict()
    if args.action == "redrive":
        return _with_progress("redrive", lambda p: operations.redrive(resources, who, args.rate, args.limit,
                                                                      p)).to_dict()
    if args.action == "purge":
        return _with_progress(f"purge {args.queue}", lambda p: operations.purge(resources, args.queue, who,
                                                                                p)).to_dict()
    if args.action in ("pause", "resume"):
        state = control.set_paused(args.action == "pause", who)
        control.audit(who, args.action, 1)
        return state.to_dict()
    if args.action == "fleet":
        changes = _fleet_changes(args)
        state = control.set_fleet(resources.settings, changes, who)
        control.audit(who, "fleet settings", len(changes), {"changes": changes})
        return state.to_dict()
    return control.read().to_dict()


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    settings = settings_or_exit(log)
    if args.action == "purge" and not args.yes:
        answer = input(f"Empty the {args.queue} queue of stack {settings.prefix}, marking its photos FAILED? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not purged")
            return 1
    try:
        print(json.dumps(run(args, Resources.connect(settings)), indent=1))
    except (Invalid, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except SightfleetError as exc:
        print(f"the stack is out of reach: {exc}", file=sys.stderr)
        return 3
    return 0
