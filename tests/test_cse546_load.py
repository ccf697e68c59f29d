"""The course's workload: 100 concurrent `POST /` (field `myfile`) against the local stack, all answered."""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor


from tests.support import jpeg_bytes

REQUESTS = 100


def test_100_concurrent_requests_are_all_answered_name_colon_label(local_stack):
    photo = jpeg_bytes("chelsea", scale=300 / 451)  # about 300x200: small, so the fleet keeps up

    def classify(index: int) -> tuple[int, str, float]:
        started = time.monotonic()
        reply = local_stack.post("/", timeout=170,
                                 files={"myfile": (f"test_{index:03d}.jpg", photo, "image/jpeg")})
        return reply.status_code, reply.text, time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        answers = list(pool.map(classify, range(REQUESTS)))
    elapsed = time.monotonic() - started
    failures = [(i, status, text[:200]) for i, (status, text, _) in enumerate(answers) if status != 200]
    assert not failures, failures
    for index, (_, text, _) in enumerate(answers):
        assert re.fullmatch(rf"test_{index:03d}:[^:\n]+", text), text
    labels = {text.split(":", 1)[1] for _, text, _ in answers}
    assert labels == {answers[0][1].split(":", 1)[1]}, labels  # the same photo: the same answer each time
    assert elapsed < 180, f"100 requests took {elapsed:.0f} s"
    print(f"100 concurrent POST / answered in {elapsed:.1f} s "
          f"(slowest {max(a[2] for a in answers):.1f} s); label {labels.pop()!r}")
