"""The workload generator against the real local stack (web tier, queue, fleet of workers)."""
from __future__ import annotations

import pytest

from workload_generator import API, BUILTIN_GROUND_TRUTH, SYNC, LoadConfig, builtin_images, run_workload

REQUESTS, CONCURRENCY = 6, 3


@pytest.mark.parametrize("mode", [SYNC, API])
def test_against_local_stack(local_stack, mode):
    # With the admin's key: the api mode's uploads need one, and the fleet figures are for admins.
    config = LoadConfig(url=local_stack.web_url, mode=mode, num_requests=REQUESTS, concurrency=CONCURRENCY,
                        timeout_s=180, progress=False, api_key=local_stack.api_key)
    record = run_workload(config, builtin_images())
    summary = record.summary(BUILTIN_GROUND_TRUTH)
    try:
        assert (summary.sent, summary.succeeded, summary.failed) == (REQUESTS, REQUESTS, 0), summary.failures
        # 6 requests cycle the 5 photos: chelsea twice, and rocket has no ground truth
        judgement = summary.judgement
        assert (judgement.correct, judgement.wrong, judgement.unchecked) == (5, 0, 1), judgement.wrong_examples
        assert summary.latency_s["min"] > 0 and summary.throughput_rps > 0
        if mode == API:
            _check_against_the_service(local_stack, record)
        if local_stack.get("/api/ops/summary", timeout=10).status_code == 200:
            assert summary.fleet and summary.fleet["peak_running"] >= 1
    except AssertionError:
        print(local_stack.log_text()[-6000:])
        raise


def _check_against_the_service(stack, record) -> None:
    """Each reported result is what the service stored for that image."""
    for result in record.results:
        stored = stack.get(f"/api/images/{result.image_id}", timeout=10).json()
        assert stored["status"] == "SUCCEEDED" and stored["filename"] == result.filename
        assert stored["top_label"] == result.label and stored["instance_id"] == result.instance_id
