"""The local AWS endpoint as scripts/run serves it (sightfleet.emulator) vs moto's own `python -m moto.server`.

Run from the repository root:  .venv/bin/python benchmarks/emulator.py [--calls 200] [--rounds 3]
Both servers run side by side; each round times a block of calls against one, then the other,
so drift on a shared machine hits both alike. Per call: wall ms, the client's CPU ms (botocore)
and the emulator's CPU ms (its whole process tree); then served-here / moto.server ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tqdm import tqdm  # noqa: E402

from sightfleet.config import Settings  # noqa: E402
from sightfleet.resources import Resources, provision  # noqa: E402
from tests.support import AWS_TEST_ENV, answers, descendants, free_port, unique_prefix, wait_for  # noqa: E402

SERVERS = {"served here": "sightfleet.emulator", "moto.server": "moto.server"}
BODY = os.urandom(400_000)   # about a 3 MP JPEG


def start(module: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(url + "/moto-api/"), 30, what=module)
    return proc, url


def tree_cpu_ms(pid: int) -> float:
    """CPU time so far of a process and its live descendants, from /proc (Linux)."""
    ticks = 0
    for each in {pid} | descendants(pid):
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def operations(resources: Resources) -> dict:
    """The calls a worker makes most, each as a function of a counter."""
    # Sends go to another queue: moto counts a queue's messages one by one, so a filling queue
    # would make the attribute reads slower; each round starts on fresh resources for the same reason.
    return {
        "SQS queue attributes": lambda i: resources.requests.counts(),
        "SQS send": lambda i: resources.responses.send(f"message {i}"),
        "S3 put 400 KB": lambda i: resources.outputs.put(f"bench/{i}.jpg", BODY, "image/jpeg"),
        "DynamoDB put": lambda i: resources.fleet_log.put("bench", f"k{i % 50}", {"n": i}),
    }


def time_block(call, calls: int, pid: int, offset: int) -> dict:
    wall, cpu, server = time.perf_counter(), time.process_time(), tree_cpu_ms(pid)
    for i in range(calls):
        call(offset + i)
    return {"wall": (time.perf_counter() - wall) * 1000 / calls, "client": (time.process_time() - cpu) * 1000 / calls,
            "server": (tree_cpu_ms(pid) - server) / calls}


def run(calls: int, rounds: int) -> dict:
    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)
    servers = {name: start(module) for name, module in SERVERS.items()}
    try:
        samples = {}
        with tqdm(total=rounds * len(SERVERS) * 4, desc="call blocks") as bar:
            for number in range(rounds):
                for name, (proc, url) in servers.items():
                    settings = Settings(endpoint_url=url, prefix=unique_prefix("emu"))
                    provision(settings)
                    for op, call in operations(Resources.connect(settings)).items():
                        samples.setdefault((op, name), []).append(time_block(call, calls, proc.pid, number * calls))
                        bar.update()
        return {key: {field: statistics.median(s[field] for s in got) for field in ("wall", "client", "server")}
                for key, got in samples.items()}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)


def report(figures: dict) -> str:
    here, moto = SERVERS
    lines = [f"per call, medians over rounds (ms); ratio = {here} / {moto}",
             f"{'call':22} {'':12} {'wall':>7} {'client CPU':>11} {'emulator CPU':>13}"]
    for op in dict.fromkeys(op for op, _ in figures):
        for name in SERVERS:
            row = figures[(op, name)]
            lines.append(f"{op:22} {name:12} {row['wall']:7.2f} {row['client']:11.2f} {row['server']:13.2f}")
        a, b = figures[(op, here)], figures[(op, moto)]
        lines.append(f"{'':22} {'ratio':12} {a['wall'] / b['wall']:7.2f} {a['client'] / b['client']:11.2f} "
                     f"{a['server'] / b['server']:13.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per block")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(report(run(args.calls, args.rounds)))


if __name__ == "__main__":
    main()
