"""Fault injection against the real local stack: one harness for tests/test_chaos.py and benchmarks/chaos.py.

`run_chaos(config, log_dir)` starts the stack through `start_stack` (the entry point of
`scripts/run`), uploads real photos through `POST /api/images` in seeded bursts, and meanwhile
injects the faults of a seeded plan, one at a time:
- `kill_worker`: SIGKILL of a `-m app_tier` process while it holds a batch (PROCESSING rows);
- `kill_controller`: SIGKILL of the `-m controller` process;
- `kill_web_worker`: SIGKILL of one gunicorn worker of the web tier (a child of its master);
- `stall_endpoint`: SIGSTOP of the local AWS endpoint (`-m devstack.emulator` and its
  gunicorn worker) for a while, then SIGCONT;
- `poison`: every body of `poison_bodies()` sent straight to the request queue.
A sampler reads every accepted image's result row about once a second. Afterwards it checks
what a chaos run must show (every accepted image final exactly once with the right labels, rows never
rewritten once final, no worker death but ours, the stack still serving, the fleet back to zero)
and returns a `ChaosReport`: its figures, and `problems`, empty when all held.
Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

from testkit.chaos.checks import (check_door, check_fleet_back_to_zero, check_log, check_results, check_still_serving,
                                  check_unanswered_and_poison)
from testkit.chaos.pids import module_pids, resume
from testkit.chaos.plan import ChaosConfig, photo_set
from testkit.chaos.report import ChaosReport
from testkit.chaos.run import MID_BATCH_WAIT_S, ChaosRun
from testkit.stack import AWS_TEST_ENV, LocalStack, start_stack


def run_chaos(config: ChaosConfig, log_dir: Path,
              on_progress: Callable[[int, int], None] | None = None) -> tuple[ChaosReport, LocalStack]:
    """Start the stack, load it under the planned faults, check everything; the stack is stopped on return."""
    photos = photo_set()
    for name, value in AWS_TEST_ENV.items():   # the harness reads the stack's state with boto3 too
        os.environ.setdefault(name, value)
    stack = start_stack(log_dir, **config.stack_env())
    run = ChaosRun(config, stack, photos, on_progress)
    try:
        _load_under_faults(run)
        check_results(run)
        check_door(run)
        check_unanswered_and_poison(run)
        check_still_serving(run)
        check_fleet_back_to_zero(run)
    finally:
        run.stop.set()
        run.clients.shutdown(wait=True, cancel_futures=True)   # each upload is bounded, and stop ends retries
        resume(module_pids(stack, "devstack.emulator"))   # never leave a stopped endpoint behind
        run.report.stack_exit = stack.stop()
    check_log(run)
    _summarise(run)
    return run.report, stack


def _load_under_faults(run: ChaosRun) -> None:
    run._started = time.monotonic()
    sampler = threading.Thread(target=run.run_sampler, name="sampler", daemon=True)
    injector = threading.Thread(target=run.run_faults, name="faults", daemon=True)
    sampler.start()
    injector.start()
    run.run_load()
    injector.join(run.config.duration_s + run.config.stall_s[1] * run.config.faults.get("stall_endpoint", 0)
                  + MID_BATCH_WAIT_S * sum(run.config.faults.values()) + 60)
    run.clients.shutdown(wait=True)   # every upload answered (each is bounded) before the drain
    run.sampled_enough.set()
    sampler.join(90)   # a sample may sit out a stall's last seconds
    run.drain()


def _summarise(run: ChaosRun) -> None:
    report = run.report
    report.faults = run.faults
    report.submitted = len(run.uploads)
    report.accepted = len(run.accepted_ids())
    report.refused = sum(1 for u in run.uploads if u.refused)
    for item in run.uploads:
        report.answers.update(item.answers)
    if report.stack_exit != 0:
        report.problem(f"the stack stopped with exit code {report.stack_exit} (expected 0 after Ctrl-C)")
