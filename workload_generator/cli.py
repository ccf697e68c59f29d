"""Command line: parse flags once into a LoadConfig, run, print the report, write JSON and plot."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict

from workload_generator.config import MODES, SYNC, LoadConfig
from workload_generator.images import BUILTIN_GROUND_TRUTH, builtin_images, folder_images, read_ground_truth
from workload_generator.plot import write_plot
from workload_generator.report import Summary, format_table
from workload_generator.runner import RunRecord, run_workload

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 130

EPILOG = """\
Without --image-folder the generator sends five real photos from skimage.data
(chelsea, coffee, astronaut, stereo_motorcycle, rocket) and checks them against
built-in ground truth (cat, cup, person, motorcycle; rocket is not checked).
A label is correct when the expected label occurs in the returned top label as a
whole-word substring, ignoring case ("cat" matches "tabby cat", not "catamaran").
Exit status: 0 all succeeded, 1 some failed, 130 interrupted (partial report printed).
"""


def build_parser() -> argparse.ArgumentParser:
    """Flags, with the CSE546 generator's spellings (--num_request, --image_folder) as aliases."""
    parser = argparse.ArgumentParser(prog="python -m workload_generator", epilog=EPILOG,
                                     description="Send concurrent image-recognition requests and report.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the service root, e.g. http://127.0.0.1:8000/")
    parser.add_argument("--image-folder", "--image_folder", dest="image_folder",
                        help="folder of .jpg/.jpeg/.png files (cycled); default: built-in photos")
    parser.add_argument("--num-request", "--num_request", "--num-requests", dest="num_request", type=int,
                        help="requests to send (default: one per image)")
    parser.add_argument("--concurrency", type=int, default=10, help="parallel senders (default 10)")
    parser.add_argument("--mode", choices=MODES, default=SYNC,
                        help="sync: POST / with field myfile; api: POST /api/images and wait/poll (default sync)")
    parser.add_argument("--ground-truth", "--ground_truth", dest="ground_truth",
                        help="CSV of name,label lines (name without extension)")
    parser.add_argument("--retries", type=int, default=2,
                        help="retries of connection errors and 429/503 answers (default 2)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one image may take end to end, retries and polling included (default 120)")
    parser.add_argument("--wait", type=float, default=20.0,
                        help="api mode: ask the server to hold the answer this long (?wait=); 0 polls only")
    parser.add_argument("--album", help="api mode: album to upload into")
    parser.add_argument("--api-key", "--api_key", dest="api_key", default=os.environ.get("SIGHTFLEET_API_KEY"),
                        help="API key sent as `Authorization: Bearer` (default: $SIGHTFLEET_API_KEY; "
                             "none: the open course endpoint only)")
    parser.add_argument("--json", dest="json_path", help="write the numbers and per-request results here")
    parser.add_argument("--plot", dest="plot_path", help="write a PNG figure here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    """The run's settings from parsed flags."""
    return LoadConfig(url=args.url, mode=args.mode, num_requests=args.num_request, concurrency=args.concurrency,
                      retries=args.retries, timeout_s=args.timeout, wait_s=args.wait, album=args.album,
                      progress=not args.no_progress, api_key=args.api_key)


def _title(record: RunRecord) -> str:
    """The heading of the printed table and of the plot."""
    config = record.config
    return f"Sightfleet load: {config.mode} mode, {record.planned} requests, concurrency {config.concurrency}, {config.url}"


def write_json(path: str, record: RunRecord, summary: Summary) -> None:
    """The config, summary, per-request results and fleet samples as one JSON document."""
    config = {k: v for k, v in asdict(record.config).items() if k != "api_key"}  # a credential stays out of files
    doc = {"config": config, "summary": summary.to_dict(),
           "requests": [asdict(r) for r in record.results], "fleet": [asdict(s) for s in record.fleet]}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2)
    logger.info("wrote %s", path)


def report(record: RunRecord, truth: dict[str, str], args: argparse.Namespace, out=sys.stdout) -> int:
    """Print the table, write the optional files, and return the exit status."""
    summary = record.summary(truth)
    title = _title(record)
    print(format_table(summary, title), file=out, flush=True)
    if args.json_path:
        write_json(args.json_path, record, summary)
    if args.plot_path:
        write_plot(args.plot_path, record.results, record.fleet, record.duration_s, title)
    if record.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.failed == 0 and summary.completed == summary.planned else EXIT_FAILURES


def main(argv: list[str] | None = None, out=sys.stdout) -> int:
    """Run the generator with argv; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.image_folder:
        images = folder_images(args.image_folder)
    else:
        images = list(builtin_images())
    truth = read_ground_truth(args.ground_truth) if args.ground_truth else (
        {} if args.image_folder else dict(BUILTIN_GROUND_TRUTH))
    record = run_workload(config_from_args(args), images)
    return report(record, truth, args, out)


def run() -> None:
    """Console entry: exit with main's status; after Ctrl-C leave without joining stuck senders."""
    status = main()
    if status == EXIT_INTERRUPTED:
        # sender threads may sit in a socket read for up to --timeout; the interpreter
        # would join them at exit, so leave at once now that the report is out
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
