"""End to end: N concurrent requests against the local stack, cold (an empty fleet) and warm (its pool).

Starts `python -m devstack.stack` on free ports with a unique prefix (its local defaults: cap 3,
a warm pool of 3), sends the requests with the workload generator (api mode: each answer carries
the worker's timings), waits until the fleet has gone into the pool, and sends them again: the
warm run. Then a calibration batch of CALIBRATION_IMAGES goes to one worker alone, whose median
timings.total is the uncontended time per image. For each run it prints total time, first result,
latency percentiles, peak instances and the ratio of total time to the ideal, N x uncontended
time per image / cores: what perfectly parallel workers on every core would need, with no queue,
no emulator, no start-up, and no two workers sharing a core (the service time measured under the
run's own contention, printed beside it, would flatter the ratio). It also times SQS round trips
on the same local AWS endpoint, so the emulator's share is visible beside the service's.

    .venv/bin/python benchmarks/end_to_end.py [--requests 100] [--concurrency 100] [--mode api] [--plot F.png]
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from workload_generator import API, BUILTIN_GROUND_TRUTH, MODES, LoadConfig, builtin_images, run_workload  # noqa: E402
from workload_generator.plot import write_plot  # noqa: E402
from workload_generator.report import format_table  # noqa: E402
from sightfleet.local_access import ENV_FILE_VAR, LocalAccess  # noqa: E402
from devstack.stack import ADMIN_KEY_LINE, endpoint_env  # noqa: E402

READY_RE = re.compile(r"Sightfleet web: (http://\S+)")
# This run's key pair and control token: the stack takes them (pinned) and this process signs with them.
ACCESS = LocalAccess.generate()
START_TIMEOUT_S, STOP_TIMEOUT_S, EMULATOR_ROUND_TRIPS = 180, 120, 30
# One receive's worth (the target backlog per instance): the controller starts one worker for it.
CALIBRATION_IMAGES = 10
POOL_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_stack(log_path: Path) -> tuple[subprocess.Popen, str, str, str]:
    """Start the stack in its own process group; return it, its web URL, AWS URL and prefix."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    aws_port = free_port()
    env = {**os.environ, **endpoint_env(ACCESS), "PORT": str(free_port()), "SIGHTFLEET_LOCAL_AWS_PORT": str(aws_port),
           "SIGHTFLEET_PREFIX": prefix, ENV_FILE_VAR: str(log_path.with_suffix(".aws.env"))}
    env.pop("AWS_ENDPOINT_URL", None)  # the stack points its children at its own endpoint
    with open(log_path, "w") as log_file:
        # A fresh endpoint each run, kept in memory only: a benchmark measures the service, not snapshots.
        proc = subprocess.Popen([str(REPO / ".venv/bin/python"), "-m", "devstack.stack", "--no-persist"], cwd=REPO,
                                env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, wait_ready(proc, log_path), f"http://127.0.0.1:{aws_port}", prefix


def wait_ready(proc: subprocess.Popen, log_path: Path) -> str:
    """The web URL once the stack has printed it and /healthz answers 200."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the stack exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        found = READY_RE.search(log_path.read_text(errors="replace"))
        if found and _healthy(found.group(1)):
            return found.group(1)
        time.sleep(0.5)
    raise RuntimeError(f"the stack was not ready within {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


def _healthy(web_url: str) -> bool:
    try:
        return requests.get(web_url + "/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def stop_stack(proc: subprocess.Popen) -> int:
    """SIGINT to the stack's process group, as Ctrl-C would; SIGKILL only if it does not stop."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def use_run_credentials() -> None:
    """This process talks to the stack's local endpoint too, with the pair the stack was given."""
    os.environ.update({**ACCESS.client_env(), "AWS_DEFAULT_REGION": "us-east-1"})


def emulator_round_trip_ms(aws_url: str, prefix: str) -> float:
    """Median ms of one SQS send + receive + delete on the local endpoint, on a scratch queue."""
    from sightfleet.aws.sqs import Queue, ensure_queues
    from sightfleet.config import Settings

    use_run_credentials()
    settings = Settings(prefix=f"{prefix}-probe", endpoint_url=aws_url)
    ensure_queues(settings)
    queue = Queue(settings, settings.names.response_queue)
    times = []
    for _ in range(EMULATOR_ROUND_TRIPS):
        started = time.perf_counter()
        queue.send("probe")
        for message in queue.receive(max_messages=1, wait_s=1):
            queue.delete(message.receipt)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def peak_instances(record) -> tuple[int, str]:
    """Peak running instances from the fleet samples, else distinct workers seen in results."""
    if record.fleet:
        return max(s.running for s in record.fleet), "sampled from /api/ops/summary"
    workers = {r.instance_id for r in record.results if r.instance_id}
    return len(workers), "distinct worker instances in the results (target has no /api/ops/summary)"


def first_result_s(record) -> float | None:
    """Seconds from the run's start to its first final answer."""
    done = [r.finished_s for r in record.results if r.ok]
    return min(done) if done else None


# What each of the stack's processes is, by a word of its command line (the first that matches).
ROLES = (("endpoint", "devstack.emulator"), ("workers", "app_tier"), ("web", "gunicorn"),
         ("host", "devstack.local_host"), ("controller", "controller"))


def cpu_by_role(stack_pid: int) -> dict[str, float]:
    """CPU seconds so far of the stack's live processes, by role (the stack's supervisor: "stack"); what their
    children that ended used, as the kernel adds it to the parent that reaped them, as "ended"."""
    from testkit.procs import descendants, proc_stats

    stats, ticks = proc_stats(), os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid in {stack_pid} | descendants(stack_pid, stats):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue   # ended meanwhile
        role = next((name for name, word in ROLES if word in command), "stack")
        used[role] = used.get(role, 0.0) + (int(stats[pid][11]) + int(stats[pid][12])) / ticks
        used["ended"] = used.get("ended", 0.0) + (int(stats[pid][13]) + int(stats[pid][14])) / ticks
    return used


def measured_cpu(stack_pid: int, run) -> tuple[object, dict]:
    """run()'s result, and the CPU seconds it took by role: the stack's processes and this one (the load
    generator's threads), which all share this machine's cores."""
    before, own_s = cpu_by_role(stack_pid), time.process_time()
    result = run()
    after = cpu_by_role(stack_pid)
    # A process that ended during the run is missing from `after`: its CPU, all of its life, is in its
    # parent's "ended" (an overcount by what it used before the run).
    used = {role: max(0.0, after[role] - before.get(role, 0.0)) for role in after}
    return result, {**used, "generator": time.process_time() - own_s}


def report(what: str, record, uncontended_ms: float | None, cpu_s: dict | None = None) -> None:
    """Print the generator's table and the benchmark's figures for one run."""
    summary = record.summary(BUILTIN_GROUND_TRUTH)
    print()
    print(format_table(summary, f"End to end, {what}: {record.planned} requests, {record.config.mode} mode"))
    cores = os.cpu_count() or 1
    peak, how = peak_instances(record)
    first = first_result_s(record)
    print()
    print(f"total time            {record.duration_s:.2f} s")
    print(f"first result          {first:.2f} s" if first is not None else "first result          -")
    latency = summary.latency_s
    print("latency (s)           " + "  ".join(f"{k} {latency[k]:.2f}" for k in ("p50", "p90", "p95", "p99", "max"))
          if latency["p50"] is not None else "latency (s)           -")
    print(f"peak instances        {peak} ({how})")
    contended_ms = summary.service_ms["p50"]
    if contended_ms is not None:
        print(f"service time (p50)    {contended_ms:.1f} ms per image in this run (worker timings.total, contended)")
    if uncontended_ms is None:
        print("ideal                 - (no uncontended time per image; use --mode api)")
        return
    ideal_s = record.planned * uncontended_ms / 1000 / cores
    print(f"ideal                 {ideal_s:.2f} s = {record.planned} x {uncontended_ms:.1f} ms (one worker alone) "
          f"/ {cores} cores")
    print(f"total / ideal         {record.duration_s / ideal_s:.2f}x")
    if cpu_s:
        # No schedule of this run's work can take less wall time than its CPU time over the cores:
        # the floor says how much of the ratio is work done on the same cores beside the pipeline.
        floor_s = sum(cpu_s.values()) / cores
        print("CPU per image (ms)    " + "  ".join(f"{role} {1000 * used / record.planned:.0f}"
                                                   for role, used in sorted(cpu_s.items(), key=lambda kv: -kv[1])))
        print(f"CPU floor             {floor_s:.2f} s = that CPU / {cores} cores: {floor_s / ideal_s:.2f}x the ideal "
              f"(the run took {record.duration_s / floor_s:.2f}x the floor)")


def wait_pooled(aws_url: str, prefix: str) -> float:
    """Until no worker is live and at least one is in the pool; returns how long that took."""
    from sightfleet.aws.ec2 import Fleet
    from sightfleet.config import Settings
    from sightfleet.interfaces import LIVE_STATES, POOLED_STATES

    use_run_credentials()
    fleet, started = Fleet(Settings(prefix=prefix, endpoint_url=aws_url)), time.monotonic()
    while time.monotonic() - started < POOL_TIMEOUT_S:
        states = {i.state for i in fleet.instances(states=LIVE_STATES + POOLED_STATES)}
        if states and not states & set(LIVE_STATES):
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"the fleet did not go into the pool within {POOL_TIMEOUT_S} s")


def admin_key(log_path: Path) -> str:
    """The admin's API key that a fresh stack prints once (the JSON API and /api/ops/summary need it)."""
    found = re.search(re.escape(ADMIN_KEY_LINE) + r"(\S+)", log_path.read_text(errors="replace"))
    if not found:
        raise RuntimeError(f"the stack printed no admin API key:\n{log_path.read_text()[-3000:]}")
    return found.group(1)


def uncontended_service_ms(web_url: str, mode: str, api_key: str) -> float | None:
    """Median timings.total of a calibration batch that one worker runs alone (the rest stay in the pool)."""
    config = LoadConfig(url=web_url, mode=mode, num_requests=CALIBRATION_IMAGES, concurrency=CALIBRATION_IMAGES,
                        timeout_s=600, wait_s=60, progress=False, api_key=api_key)
    record = run_workload(config, builtin_images())
    workers = {r.instance_id for r in record.results if r.instance_id}
    service = [r.service_ms for r in record.results if r.ok and r.service_ms is not None]
    if not service:
        return None
    print(f"\ncalibration           {len(service)} images on {len(workers)} worker(s): "
          f"{statistics.median(service):.1f} ms per image (median timings.total)")
    return statistics.median(service)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--mode", choices=MODES, default=API)
    parser.add_argument("--plot", help="also write the generator's figure of the cold run (PNG) here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log_path = Path(tempfile.mkdtemp(prefix="sightfleet-bench-")) / "stack.log"
    started = time.monotonic()
    proc, web_url, aws_url, prefix = start_stack(log_path)
    print(f"stack ready in {time.monotonic() - started:.1f} s at {web_url} (log {log_path})")
    records, api_key = {}, admin_key(log_path)
    try:
        config = LoadConfig(url=web_url, mode=args.mode, num_requests=args.requests, concurrency=args.concurrency,
                            timeout_s=600, wait_s=60, progress=sys.stderr.isatty(), api_key=api_key)
        cpu_s = {}
        for what in ("cold", "warm"):
            records[what], cpu_s[what] = measured_cpu(proc.pid, lambda: run_workload(config, builtin_images()))
            print(f"{what} run done in {records[what].duration_s:.1f} s; fleet into the pool after "
                  f"{wait_pooled(aws_url, prefix):.1f} s more")
        uncontended_ms = uncontended_service_ms(web_url, args.mode, api_key)
        for what, record in records.items():
            report(what, record, uncontended_ms, cpu_s[what])
        print(f"\nemulator SQS trip     {emulator_round_trip_ms(aws_url, prefix):.1f} ms "
              "(send + receive + delete, median)")
        if args.plot:
            cold = records["cold"]
            write_plot(args.plot, cold.results, cold.fleet, cold.duration_s,
                       f"End to end: {cold.planned} requests into an empty local fleet")
    finally:
        code = stop_stack(proc)
        print(f"stack stopped with exit status {code}")
    return 0 if records and all(r.summary().failed == 0 for r in records.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
