"""`python -m app_tier.reprocess`: run stored photos through the fleet again (after a model or vocabulary change).

    python -m app_tier.reprocess [--owner ID] [--album NAME] [--older-than-version V] [--restart]

Requeues each finished photo of the selection whose labels were not made by version V, the current
label_model_version (every finished photo without --older-than-version), page by page with a progress
bar; the fleet scales to the backlog as for any upload. The run's progress is recorded: run the same
command again to resume (--restart starts the selection over). Prints the counts as its last line.
"""
from __future__ import annotations

import argparse
import logging
import sys

from tqdm import tqdm

from sightfleet.config import settings_or_exit
from sightfleet.contracts import clean_album, is_owner
from sightfleet.errors import SightfleetError
from sightfleet.logs import setup_logging
from sightfleet.reprocessing import Progress, load_progress, run_page
from sightfleet.resources import Resources

log = logging.getLogger("app_tier.reprocess")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app_tier.reprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--owner", help="one owner's photos (default: every owner's)")
    parser.add_argument("--album", help="one album's photos (with --owner: that owner's album)")
    parser.add_argument("--older-than-version", dest="older_than", metavar="VERSION",
                        help="only photos whose label_model_version is not VERSION (the current one), or none")
    parser.add_argument("--page-size", type=int, default=100, choices=range(1, 101), metavar="1-100")
    parser.add_argument("--restart", action="store_true", help="start the selection over instead of resuming")
    args = parser.parse_args(argv)
    if args.owner is not None and not is_owner(args.owner):
        parser.error("--owner must be an account id")
    if args.album is not None:
        try:
            args.album = clean_album(args.album)
        except ValueError as exc:
            parser.error(f"--album: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    setup_logging("reprocess")
    args = parse_args(argv)
    resources = Resources.connect(settings_or_exit(log))
    progress = Progress.for_selection(args.owner, args.album, args.older_than)
    if not args.restart:
        progress = load_progress(resources.fleet_log, progress)
        if progress.seen:
            log.info("resuming run %s after %s photos", progress.run, progress.seen)
    bar = tqdm(desc="photos", unit="photo", initial=progress.seen, file=sys.stderr)
    try:
        while True:
            progress = run_page(resources, progress, args.page_size, lambda _: bar.update())
            bar.set_postfix(requeued=progress.requeued, skipped=progress.skipped)
            if progress.done:
                break
    except SightfleetError as exc:
        log.error("stopped after %s photos: %s; run the same command again to resume", progress.seen, exc)
        return 1
    finally:
        bar.close()
    print(f"run {progress.run}: {progress.seen} photos seen, {progress.requeued} requeued, "
          f"{progress.skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
