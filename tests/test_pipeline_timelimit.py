"""The per-image time budget: SIGALRM interrupts in the main thread, checks between stages elsewhere."""
from __future__ import annotations

import dataclasses
import signal
import threading
import time

import pytest
from PIL import Image

from app_tier.pipeline import FAILED, SUCCEEDED, TIMEOUT, StageError
from app_tier.pipeline import pipeline as pipeline_module
from app_tier.pipeline.timelimit import Budget, charged
from tests.pipeline_fixtures import encoded, item, jpeg, photo, shared_pipeline

pytestmark = pytest.mark.slow  # models loaded


def test_alarm_interrupts_a_busy_loop():
    started = time.monotonic()
    with pytest.raises(StageError) as caught:
        with charged(Budget(0.2), "spin"):
            while True:
                pass
    assert caught.value.code == TIMEOUT and "spin" in caught.value.message
    assert time.monotonic() - started < 1.0


def test_alarm_is_not_swallowed_by_broad_excepts():
    with pytest.raises(StageError):
        with charged(Budget(0.1), "library"):
            for _ in range(100):
                try:
                    time.sleep(0.05)
                except Exception:  # noqa: BLE001 - what careless library code does
                    pass


def test_budget_is_shared_by_the_stages_of_one_image():
    budget = Budget(0.3)
    with charged(budget, "first"):
        time.sleep(0.2)
    with pytest.raises(StageError) as caught:
        with charged(budget, "second"):
            time.sleep(0.2)
    assert "second" in caught.value.message and budget.spent >= 0.3


def test_previous_alarm_handler_and_timer_are_restored():
    def outer_handler(signum, frame):
        raise AssertionError("the outer timer fired during the test")

    previous = signal.signal(signal.SIGALRM, outer_handler)
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        with charged(Budget(1.0), "quick"):
            time.sleep(0.01)
        assert signal.getsignal(signal.SIGALRM) is outer_handler
        assert 4.0 < signal.getitimer(signal.ITIMER_REAL)[0] < 5.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_outside_the_main_thread_the_budget_is_checked_after_the_stage():
    errors = []

    def work():
        try:
            with charged(Budget(0.1), "threaded"):
                time.sleep(0.3)
        except StageError as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert [e.code for e in errors] == [TIMEOUT]


def test_zero_means_no_limit():
    with charged(Budget(0), "free"):
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pipeline():
    return shared_pipeline()


def test_a_slow_image_times_out_and_the_next_one_succeeds(pipeline, monkeypatch):
    real_decode = pipeline_module.decode

    def stuck_on_png(image, working_side):
        if image.format == "PNG":
            time.sleep(10)      # a decoder that hangs on this one
        return real_decode(image, working_side)

    monkeypatch.setattr(pipeline_module, "decode", stuck_on_png)
    strict = pipeline.with_settings(dataclasses.replace(pipeline.settings, image_timeout_s=1.0))
    started = time.monotonic()
    stuck, fine = strict.process([item(encoded(photo("coffee"), "PNG"), "stuck"), item(jpeg("chelsea"), "fine")])
    assert time.monotonic() - started < 5
    assert stuck.status == FAILED and stuck.error["code"] == TIMEOUT
    assert "decode" in stuck.error["message"] and stuck.timings["decode"] == pytest.approx(1000, abs=150)
    assert fine.status == SUCCEEDED


def test_a_real_decode_is_interrupted_between_chunks(pipeline):
    big = encoded(photo("chelsea").resize((4000, 2660), Image.Resampling.BILINEAR), "PNG", compress_level=1)
    strict = pipeline.with_settings(dataclasses.replace(pipeline.settings, image_timeout_s=0.05))
    outcome, = strict.process([item(big)])
    assert outcome.error["code"] == TIMEOUT
    assert outcome.timings["total"] < 150
