"""The local AWS endpoint as scripts/run serves it (devstack.emulator) vs moto's own `python -m moto.server`,
and vs itself without its guard (devstack/endpoint_guard.py: Host, Sec-Fetch-Site, SigV4 verified in full).

Run from the repository root:  .venv/bin/python benchmarks/emulator.py [--calls 200] [--rounds 3]
The servers run side by side; each round times a block of calls against one, then the next,
so drift on a shared machine hits all alike. Per call: wall ms, the client's CPU ms (botocore)
and the emulator's CPU ms (its whole process tree); then served-here / moto.server ratios and
served-here / unguarded ratios (what the guard costs a request).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tqdm import tqdm  # noqa: E402

from devstack.stack import moto_command  # noqa: E402
from sightfleet.config import Settings  # noqa: E402
from sightfleet.resources import Resources, provision  # noqa: E402
from devstack.endpoint_guard import allowed_hosts, refusal  # noqa: E402
from testkit.access import TEST_ACCESS, environ_for, sigv4_headers  # noqa: E402
from testkit.procs import tree_cpu_ms, unique_prefix  # noqa: E402
from testkit.stack import start_moto  # noqa: E402

BODY = os.urandom(400_000)   # about a 3 MP JPEG
BACKLOG = 200
STAMP = "2026-01-01T00:00:00.000Z"


def moto_server_command(port: int) -> list[str]:
    """moto's own server, as `python -m moto.server` runs it."""
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def unguarded_command(port: int) -> list[str]:
    """The endpoint served here with its guard taken out: for this comparison only, never a way to run it."""
    script = ("import sys; from sightfleet import emulator; emulator.EndpointGuard = lambda app, *args: app; "
              "emulator.main(sys.argv[1:])")
    return [sys.executable, "-c", script, "-H", "127.0.0.1", "-p", str(port)]


SERVERS = {"served here": moto_command, "moto.server": moto_server_command, "unguarded": unguarded_command}


def operations(resources: Resources) -> dict:
    """The calls a worker makes most, each as a function of a counter."""
    # Sends go to another queue: moto counts a queue's messages one by one, so a filling queue
    # would make the attribute reads slower; each round starts on fresh resources for the same reason.
    return {
        "SQS queue attributes": lambda i: resources.requests.counts(),
        "SQS send": lambda i: resources.responses.send(f"message {i}"),
        "S3 put 400 KB": lambda i: resources.outputs.put(f"bench/{i}.jpg", BODY, "image/jpeg"),
        "DynamoDB put": lambda i: resources.fleet_log.put("bench", f"k{i % 50}", {"n": i}),
        # The worker's claim: a put with a condition (moto parsed it anew each time).
        "DynamoDB conditional put": lambda i: resources.results.start(
            {"id": f"{i:032x}", "album": "bench", "status": "PROCESSING", "submitted_at": STAMP, "updated_at": STAMP}),
        # 50 items back in one response (moto worked out each member's names anew).
        "DynamoDB batch get 50": lambda i: resources.fleet_log.get_many("bench", [f"k{n}" for n in range(50)]),
        # Visibility 0 leaves the backlog as it was, so every call receives 10 of BACKLOG.
        f"SQS receive 10 of {BACKLOG}": lambda i: resources.requests.receive(10, 0, visibility_s=0),
    }


def backlog(resources: Resources) -> None:
    """Jobs-sized messages waiting on the request queue (after the attribute reads, which count them)."""
    resources.requests.send_batch([json.dumps({"id": f"{i:032x}", "key": f"uploads/{i}.jpg"}) for i in range(BACKLOG)])


def time_block(call, calls: int, pid: int, offset: int) -> dict:
    server = tree_cpu_ms(pid)   # read outside the client's clocks: it scans /proc
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        call(offset + i)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": wall * 1000 / calls, "client": cpu * 1000 / calls, "server": (tree_cpu_ms(pid) - server) / calls}


def run(calls: int, rounds: int, only: str = "") -> dict:
    servers = {name: start_moto(command) for name, command in SERVERS.items()}
    try:
        samples = {}
        with tqdm(total=rounds * len(SERVERS) * len(operations(None)), desc="call blocks") as bar:
            for number in range(rounds):
                for name, (proc, url) in servers.items():
                    settings = Settings(endpoint_url=url, prefix=unique_prefix("emu"))
                    provision(settings)
                    resources = Resources.connect(settings)
                    for op, call in operations(resources).items():
                        if only and only not in op:
                            bar.update()
                            continue
                        if op.startswith("SQS receive"):
                            backlog(resources)
                        samples.setdefault((op, name), []).append(time_block(call, calls, proc.pid, number * calls))
                        bar.update()
        return {key: {field: statistics.median(s[field] for s in got) for field in ("wall", "client", "server")}
                for key, got in samples.items()}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)


def guard_check_us(body_bytes: int, checks: int = 2000) -> float:
    """Microseconds the guard's check takes for one signed SQS send of body_bytes (body hashed), in this process."""
    url = "http://127.0.0.1:4566/"
    body = json.dumps({"QueueUrl": url + "q", "MessageBody": "x" * body_bytes}).encode()
    headers = sigv4_headers(url, "POST", body, "sqs", {"Content-Type": "application/x-amz-json-1.0",
                                                       "X-Amz-Target": "AmazonSQS.SendMessage"})
    environs = [environ_for("POST", url, headers, body) for _ in range(checks)]
    hosts, now = allowed_hosts("127.0.0.1", 4566), time.time()
    started = time.perf_counter()
    refused = [refusal(environ, hosts, TEST_ACCESS, now) for environ in environs]
    took = time.perf_counter() - started
    assert not any(refused), refused[0]
    return took * 1e6 / checks


def report(figures: dict) -> str:
    here, *others = SERVERS
    lines = [f"per call, medians over rounds (ms); ratios = {here} / each other server",
             f"{'call':22} {'':14} {'wall':>7} {'client CPU':>11} {'emulator CPU':>13}"]
    for op in dict.fromkeys(op for op, _ in figures):
        for name in SERVERS:
            row = figures[(op, name)]
            lines.append(f"{op:22} {name:14} {row['wall']:7.2f} {row['client']:11.2f} {row['server']:13.2f}")
        for other in others:
            a, b = figures[(op, here)], figures[(op, other)]
            lines.append(f"{'':22} {'/ ' + other:14} {a['wall'] / b['wall']:7.2f} {a['client'] / b['client']:11.2f} "
                         f"{a['server'] / b['server']:13.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="time only the calls whose name holds this")
    args = parser.parse_args()
    print(report(run(args.calls, args.rounds)))
    for size in (200, 100_000):
        print(f"the guard's check alone, one signed {size:,}-byte SQS send: {guard_check_us(size):.0f} us")


if __name__ == "__main__":
    main()
