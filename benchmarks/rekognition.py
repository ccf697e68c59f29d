"""What a Rekognition caller waits for: DetectLabels from zero, from the warm pool and warm; DetectText and DetectFaces warm.

Run: .venv/bin/python benchmarks/rekognition.py [--calls 5]

Starts the local stack (one worker at most, a warm pool of one), makes an account and an access key
with the accounts CLI, and times boto3's `detect_labels` (the SDK as a caller uses it) on a real photo:
1. from zero: no instance exists yet, so the call waits for a launch and a model load;
2. warm fleet: the worker is up, calls one after the other; then DetectText (on skimage's `text`, a
   photo of printed text) and DetectFaces (`astronaut`), each job running only its own stage;
3. from the pool: the worker went idle into the warm pool (stopped), so the call waits for a start.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from testkit.photos import REPO, jpeg_bytes  # noqa: E402
from testkit.procs import wait_for  # noqa: E402
from testkit.stack import AWS_TEST_ENV, start_stack  # noqa: E402


def accounts_cli(stack, *args: str) -> list[str]:
    env = {**stack.env, **AWS_TEST_ENV, "AWS_ENDPOINT_URL": stack.aws_url}
    done = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "web_tier.accounts", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().splitlines()


def pooled(stack) -> int:
    """Stopped (pooled) workers of the stack, read from its EC2 endpoint."""
    ec2 = boto3.client("ec2", endpoint_url=stack.aws_url, region_name="us-east-1",
                       aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"])
    reply = ec2.describe_instances(Filters=[{"Name": "tag:sightfleet:stack", "Values": [stack.prefix]},
                                            {"Name": "instance-state-name", "Values": ["stopped"]}])
    return sum(len(r["Instances"]) for r in reply["Reservations"])


def timed(call, photo: bytes) -> float:
    """Seconds one call of the boto3 client takes."""
    start = time.perf_counter()
    call(Image={"Bytes": photo})
    return time.perf_counter() - start


def line(what: str, times: list[float]) -> str:
    return (f"  {what:<20}: {statistics.median(times):6.2f} s median of {len(times)} "
            f"(min {min(times):.2f}, max {max(times):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5, help="calls on the warm fleet")
    args = parser.parse_args()
    stack = start_stack(Path(tempfile.mkdtemp()), SIGHTFLEET_MAX_INSTANCES="1", SIGHTFLEET_WARM_POOL_SIZE="1",
                        SIGHTFLEET_POOL_GRACE_S="2", SIGHTFLEET_IDLE_GRACE_S="60")
    try:
        accounts_cli(stack, "create", "bench")
        pair = dict(line.split("=", 1) for line in accounts_cli(stack, "access-key", "bench")[-2:])
        client = boto3.client("rekognition", endpoint_url=stack.web_url, region_name="us-east-1",
                              aws_access_key_id=pair["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=pair["AWS_SECRET_ACCESS_KEY"],
                              config=Config(retries={"max_attempts": 1}, read_timeout=70))
        photos = [jpeg_bytes("chelsea", scale=1 - i / 50) for i in range(args.calls + 2)]
        from_zero = timed(client.detect_labels, photos[0])
        warm = [timed(client.detect_labels, photo) for photo in photos[1:-1]]
        text = [timed(client.detect_text, jpeg_bytes("text", scale=1 - i / 50)) for i in range(args.calls)]
        faces = [timed(client.detect_faces, jpeg_bytes("astronaut", scale=1 - i / 50)) for i in range(args.calls)]
        wait_for(lambda: pooled(stack) == 1, 60, what="the worker in the warm pool")
        from_pool = timed(client.detect_labels, photos[-1])
    finally:
        stack.stop()
    print(f"Rekognition calls on {os.cpu_count()} cores, local stack (boto3 client; DetectLabels on chelsea "
          "451x300, DetectText on skimage's text, DetectFaces on astronaut; the stack's moderation runs on each)")
    print(f"  from zero instances : {from_zero:6.2f} s")
    print(f"  from the warm pool  : {from_pool:6.2f} s")
    print(line("warm fleet", warm))
    print(line("DetectText, warm", text))
    print(line("DetectFaces, warm", faces))
    print(f"  ratio zero/warm     : {from_zero / statistics.median(warm):6.1f}x; "
          f"pool/warm {from_pool / statistics.median(warm):.1f}x")


if __name__ == "__main__":
    main()
