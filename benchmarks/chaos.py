"""Chaos: a longer fault-injection run against the real local stack, printing what survived.

The harness is testkit/chaos/ (the same one tests/test_chaos.py runs small in CI): the
stack starts as `scripts/run` starts it, real photos go through `POST /api/images` in seeded
bursts over --duration seconds, and faults come at seeded moments at the given rates per minute:
SIGKILL of a worker mid-batch, of the controller, of a gunicorn worker; SIGSTOP of the local AWS
endpoint for --stall seconds, then SIGCONT; the eight poison bodies on the request queue.
It prints jobs submitted and accepted, faults injected by kind, final states, lost, duplicated,
wrong, crashed by input, the time to drain and the time for the fleet back to zero, and every
check that failed (exit status 1 then). The same --seed replays the same plan.

    .venv/bin/python benchmarks/chaos.py [--images 60] [--duration 120] [--seed 12] \\
        [--worker-kills 1] [--controller-kills 0.5] [--web-kills 1] [--stalls 0.5] [--poison 0.5] \\
        [--stall 15 30] [--max-instances 2] [--idle-grace 10] [--visibility-timeout 10]
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from sightfleet.logs import setup_logging  # noqa: E402
from testkit.chaos import ChaosConfig, run_chaos  # noqa: E402

RATE_OPTIONS = {"kill_worker": "--worker-kills", "kill_controller": "--controller-kills",
                "kill_web_worker": "--web-kills", "stall_endpoint": "--stalls", "poison": "--poison"}
DEFAULT_RATES = {"kill_worker": 1.0, "kill_controller": 0.5, "kill_web_worker": 1.0, "stall_endpoint": 0.5,
                 "poison": 0.5}


def config_from(args) -> ChaosConfig:
    """Fault counts from rates per minute over the load window (a rate above 0 gives at least one)."""
    minutes = args.duration / 60
    faults = {kind: max(1, round(getattr(args, kind) * minutes)) if getattr(args, kind) > 0 else 0
              for kind in RATE_OPTIONS}
    return ChaosConfig(seed=args.seed, images=args.images, duration_s=args.duration, burst=args.burst,
                       faults=faults, stall_s=tuple(args.stall), max_instances=args.max_instances,
                       idle_grace_s=args.idle_grace, visibility_timeout_s=args.visibility_timeout,
                       drain_timeout_s=args.drain_timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds over which uploads and faults come")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--burst", type=int, default=4, help="uploads per burst")
    for kind, option in RATE_OPTIONS.items():
        parser.add_argument(option, dest=kind, type=float, default=DEFAULT_RATES[kind], help="per minute; 0: none")
    parser.add_argument("--stall", type=float, nargs=2, default=(15.0, 30.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--max-instances", type=int, default=2)
    parser.add_argument("--idle-grace", type=float, default=10.0)
    parser.add_argument("--visibility-timeout", type=int, default=10)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--keep-log", type=Path, help="folder for the stack log (default: a temporary one)")
    parser.add_argument("--verbose", action="store_true", help="log the harness's faults and samples")
    args = parser.parse_args()
    setup_logging("chaos")
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    config = config_from(args)
    log_dir = args.keep_log or Path(tempfile.mkdtemp(prefix="chaos-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=config.images, desc="final", unit="img") as bar:
        def progress(final: int, accepted: int) -> None:
            bar.update(final - bar.n)
            bar.set_postfix(accepted=accepted)
        report, stack = run_chaos(config, log_dir, progress)
    print("\n".join(report.lines()))
    print(f"stack log: {stack.log_path}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
