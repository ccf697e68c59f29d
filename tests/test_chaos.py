"""Fault injection through the real stack, small enough for CI (about two minutes).

One run of `testkit/chaos/`'s harness: 16 real photos uploaded through `POST /api/images`
while a worker is SIGKILLed mid-batch, the controller and a gunicorn worker are SIGKILLed, the
local AWS endpoint is SIGSTOPped and continued, and eight poison messages go straight onto the
request queue; then every accepted image must be final once with the right answer, nothing but
our kills may have died, the stack must still serve and the fleet be back to zero. The pure parts
of the harness are tested first, so a broken harness fails on its own and not as a stack failure.
Slow: leave this file out (`--deselect tests/test_chaos.py` or `-k "not chaos"`) for a quick run;
`benchmarks/chaos.py` is the longer variant that prints the figures.
"""
from __future__ import annotations

import os
import random
import socket

import pytest

from sightfleet.contracts import FAILED, SUCCEEDED
from testkit.chaos import (
    FAULT_KINDS, ChaosConfig, Photo, plan_faults, plan_uploads, poison_bodies, run_chaos, serving_pids,
    tracebacks, unexplained_deaths,
)

pytestmark = pytest.mark.e2e

# The stall is 12 s here (15-30 s in the benchmark): longer than the 10 s visibility timeout, so
# messages a worker holds lapse and are handed to another worker while the first is frozen on a
# call (the hardest case for one result per image), yet short enough for CI.
CI_CONFIG = ChaosConfig(seed=12, images=16, duration_s=30, burst=4, stall_s=(12.0, 12.0), max_instances=2,
                        idle_grace_s=8, visibility_timeout_s=10, drain_timeout_s=120, zero_bound_s=40)


def test_every_accepted_image_ends_once_with_the_right_answer_under_faults(tmp_path):
    report, stack = run_chaos(CI_CONFIG, tmp_path)
    figures = "\n".join(report.lines())
    print(figures)
    assert not report.problems, f"{figures}\n--- end of the stack log ---\n{stack.log_text()[-8000:]}"
    assert {f.kind for f in report.faults if f.done} == set(FAULT_KINDS), figures


def test_plans_are_seeded_and_inside_the_load_window():
    config = ChaosConfig(seed=3, images=10, duration_s=40, faults={"kill_worker": 2, "poison": 1})
    photos = [Photo("a", b"a"), Photo("b", b"b")]
    plan = plan_faults(config, random.Random(3))
    assert plan == plan_faults(config, random.Random(3)) != plan_faults(config, random.Random(4))
    assert sorted(kind for _, kind in plan) == ["kill_worker", "kill_worker", "poison"]
    assert all(0 < at <= 40 for at, _ in plan) and plan == sorted(plan)
    uploads = plan_uploads(config, random.Random(3), photos)
    assert len(uploads) == 10 and len({at for at, _ in uploads}) == 3   # bursts of 4, 4 and 2


def test_photo_expectations_tell_right_from_wrong():
    cat = Photo("chelsea", b"", label_words=("cat",))
    broken = Photo("truncated", b"", bad=True)
    assert cat.wrong({"status": SUCCEEDED, "labels": [{"Name": "Egyptian cat"}]}) is None
    assert "none of" in cat.wrong({"status": SUCCEEDED, "labels": [{"Name": "dog"}]})
    assert "good photo ended FAILED" in cat.wrong({"status": FAILED, "error": {"code": "X"}})
    assert broken.wrong({"status": FAILED, "error": {"code": "CORRUPT_IMAGE"}}) is None
    assert "broken image ended SUCCEEDED" in broken.wrong({"status": SUCCEEDED, "labels": []})


def test_poison_bodies_cover_the_issue_list():
    names = [name for name, _ in poison_bodies()]
    assert names == ["non-JSON", "JSON not an object", "deep nesting", "id a number", "size a string",
                     "bad base64", "unknown version", "200 KB file name", "200 KB of unknown fields"]
    bodies = dict(poison_bodies())
    assert bodies["deep nesting"].count("[") == 5000 and len(bodies["200 KB of unknown fields"]) > 200_000


def test_log_check_explains_our_kills_and_flags_every_other_death():
    text = "\n".join([
        "WARNING [local-host] worker pid 101 of i-aaa exited (code -9) while its instance runs; terminating",
        "WARNING [local-host] worker pid 202 of i-bbb exited (code 1) while its instance runs; terminating",
        "INFO [local-host] worker pid 505 of i-ccc exited (code 0)",
        "ERROR [stack] controller (pid 303) exited with code -9; stopping the stack",
        "ERROR [stack] web (pid 404) exited with code 1; stopping the stack",
        "INFO [worker] before", "Traceback (most recent call last):", '  File "a.py", line 1, in <module>',
        "    main()", '  File "b.py", line 2, in main', "    ^^^^", '  File "c.py", line 3, in parse',
        "TypeError: expected string or bytes-like object, got 'int'", "INFO [worker] after",
    ])
    lines = text.splitlines()
    assert unexplained_deaths(text, killed={101, 303}) == [lines[1], lines[4]]
    assert tracebacks(text, context=1, frames=2) == ["\n".join(lines[5:7] + [lines[9], lines[11], lines[12]])]


def test_serving_pids_sees_a_process_only_while_it_holds_a_connection():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert serving_pids(port, [os.getpid()]) == []   # listening is not serving
        with socket.create_connection(("127.0.0.1", port)), server.accept()[0]:
            assert serving_pids(port, [os.getpid()]) == [os.getpid()]
