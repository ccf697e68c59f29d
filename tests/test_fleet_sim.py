"""The fleet simulator (benchmarks/fleet_sim.py): its ideal, each policy's documented behaviour on a tiny
trace, the JSON it writes, and that a seed fixes the run."""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace

import pytest

from benchmarks import fleet_sim
from benchmarks.fleet_sim import AsgWarmPool, Job, Keda, Seed, Sightfleet, Sim, TargetTracking, Timings
from sightfleet.config import Settings

pytestmark = pytest.mark.slow  # simulated fleets

# Round figures to check by hand: 10 s pending, 5 s from running to the first poll, 1 s to resume
# (after 4 s pending), 1 s to stop, 0.5 s an image, no jitter.
T = Timings(launch_pending_s=10, boot_s=3, model_load_s=2, resume_pending_s=4, resume_s=1, stop_s=1,
            service_s=0.5, service_sigma=0, price_per_s=0.001, min_billed_s=60, tick_s=2)


def at_time(count: int, when: float = 0.0) -> list[Job]:
    return [Job(when, T.service_s) for _ in range(count)]


def run(jobs: list[Job], policy, cap: int = 19, probes=()) -> tuple[dict, dict]:
    """The run's summary, and the live instance count at each probe time."""
    sim = Sim(jobs, T, policy, cap, seed=1)
    seen = {}
    for when in probes:
        sim.at(when, lambda w=when: seen.__setitem__(w, len(sim.live())))
    summary = sim.run().summary()
    return summary, {when: seen.get(when, 0) for when in probes}   # the run ends once nothing is live


def test_the_ideal_is_the_sum_of_service_times_and_a_seed_run_checks_by_hand():
    summary, _ = run(at_time(1), Seed())
    # Launched at 0, running at 10, polling at 15, done at 15.5, then the queue is empty: terminated.
    assert summary["ideal_seconds"] == 0.5
    assert (summary["instance_seconds"], summary["p95_latency_s"], summary["starts"]) == (5.5, 15.5, 1)
    assert summary["cost_usd"] == pytest.approx(0.06)   # billed the one-minute minimum
    assert fleet_sim.Outcome(3.0, 1.5, [1, 2, 3], 1, 0.0, 1).summary()["instance_seconds_ratio"] == 2.0


def test_the_ideal_of_a_generated_trace_is_its_service_times():
    jobs = fleet_sim.burst(50, random.Random(1), replace(T, service_sigma=0.25))
    summary, _ = run(jobs, Seed())
    assert summary["ideal_seconds"] == pytest.approx(sum(j.service_s for j in jobs), abs=0.05)
    assert len({j.service_s for j in jobs}) > 1   # jitter, seeded


def test_seed_launches_one_instance_per_queued_message_up_to_the_cap_and_each_leaves_on_an_empty_queue():
    summary, seen = run(at_time(3), Seed(), probes=[1, 15.2, 16])
    assert seen == {1: 3, 15.2: 3, 16: 0}
    assert (summary["starts"], summary["instance_seconds"], summary["peak_instances"]) == (3, 16.5, 3)
    summary, _ = run(at_time(25), Seed())
    assert summary["peak_instances"] == 19


def test_keda_activates_at_its_poll_scales_to_ceil_backlog_over_5_and_holds_for_the_cooldown():
    _, seen = run(at_time(12), Keda(), probes=[1, 16, 299, 301])
    # Poll at 0: 12 messages, activation to 1; the HPA at 15 s: ceil(12 / 5) = 3; the queue is empty
    # from 21 s, but the last active poll (0 s) + cooldownPeriod 300 s is when it goes back to zero.
    assert seen == {1: 1, 16: 3, 299: 3, 301: 0}


def test_keda_scale_up_is_bounded_by_the_hpa_rate():
    _, seen = run(at_time(200), Keda(), probes=[1, 16, 31, 46])
    assert seen == {1: 1, 16: 5, 31: 10, 46: 19}   # +max(4, 100 %) every 15 s, up to the cap


def test_target_tracking_scales_out_after_three_breaching_minutes_and_in_after_fifteen():
    summary, seen = run(at_time(100), TargetTracking(), probes=[119, 121, 1019, 1021])
    # Datapoints at 0, 60, 120 s above 10 per instance: out to ceil(100 / 10); below from 180 s: in at 1020 s.
    assert seen == {119: 0, 121: 10, 1019: 10, 1021: 0}
    assert summary["p95_latency_s"] > 120


def test_the_asg_warm_pool_resumes_pooled_instances_and_refills_the_pool_by_launching():
    sim = Sim(at_time(100), T, AsgWarmPool(), 10, seed=1)
    summary = sim.run().summary()
    # Ten resumes at 120 s (no launch); at the scale-in (1020 s) ten terminated and ten launched into
    # the pool, each booting, loading and hibernating (5 s + 1 s running, counted).
    states = sorted(i.state for i in sim.instances.values())
    assert states == ["stopped"] * 10 + ["terminated"] * 10
    assert summary["starts"] == 20
    assert summary["p95_latency_s"] < 140   # resumed (4 + 1 s), not launched (10 + 5 s): 120 + 5 + 5 s of work
    assert summary["p95_latency_s"] > 125


def test_sightfleet_starts_the_pool_first_and_its_workers_go_back_after_the_pool_grace():
    settings = Settings(max_instances=4, warm_pool_size=4, pool_grace_s=2)
    policy = Sightfleet("sightfleet", settings)
    sim = Sim(at_time(20), T, policy, 4, seed=1)
    summary = sim.run().summary()
    # desired ceil(20 / 10) = 2, both from the pool: running at 4 s, polling at 5 s, done at 10 s; the
    # empty poll lasts the pool grace, 2 s (app_tier.idle.poll_wait_s), then into the pool (stopped at 13 s):
    # 2 x 9 s running.
    assert (summary["starts"], summary["instance_seconds"], summary["p95_latency_s"]) == (2, 18.0, 10.0)
    assert len(sim.instances) == 4 and {i.state for i in sim.instances.values()} == {"stopped"}


def test_sightfleet_without_a_pool_retires_after_the_idle_grace():
    policy = Sightfleet("sightfleet-nopool", Settings(max_instances=4, idle_grace_s=60))
    summary, seen = run(at_time(20), policy, cap=4, probes=[79, 81])
    # Launched at 0, done at 20 s, empty polls of 20 s each: idle 60 s at 80 s, retired.
    assert seen == {79: 2, 81: 0}
    assert summary["instance_seconds"] == 140.0


def test_json_has_the_documented_shape(tmp_path, monkeypatch):
    out = tmp_path / "sim.json"
    monkeypatch.setattr(sys, "argv", ["fleet_sim", "--traces", "burst-100", "--caps", "19", "--quiet",
                                      "--json", str(out)])
    assert fleet_sim.main() == 0
    doc = json.loads(out.read_text())
    assert list(doc) == ["traces"] and list(doc["traces"]) == ["burst-100/cap-19"]
    policies = doc["traces"]["burst-100/cap-19"]["policies"]
    assert {"sightfleet", "sightfleet-nopool", "seed", "keda-sqs", "asg-target-tracking",
            "asg-warm-pool"} <= set(policies)
    assert [name for name in policies if name.startswith("sightfleet")] == [
        "sightfleet", "sightfleet-latency20", "sightfleet-nopool"]
    for figures in policies.values():
        assert isinstance(figures["instance_seconds_ratio"], float) and isinstance(figures["p95_latency_s"], float)
        assert figures["instance_seconds_ratio"] >= 1.0   # nothing beats perfectly packed workers


def test_a_seed_fixes_the_run_and_another_seed_changes_it():
    def once(seed: int) -> dict:
        policy = fleet_sim.sightfleet_policies(19, None, None)[0]
        return fleet_sim.simulate("day", policy, 19, fleet_sim.AWS, seed)
    assert once(3) == once(3)
    assert once(3) != once(4)


def test_the_local_model_runs_the_cold_and_the_warm_burst(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["fleet_sim", "--local"])
    args = fleet_sim.parse_args()
    result = fleet_sim.local_check(args)
    assert set(result) == {"cold", "warm"}
    assert result["warm"]["instance_seconds_ratio"] < result["cold"]["instance_seconds_ratio"]
    assert result["warm"]["p95_latency_s"] < result["cold"]["p95_latency_s"]


def test_a_worker_killed_mid_burst_no_longer_makes_the_pool_churn():
    """Its messages are in flight with nobody to work on them until their visibility lapses: the old rule
    started pooled workers for them again and again; the new one waits for the deadline (short runs)."""
    args = argparse.Namespace(idle_grace=None, pool_grace=None, seed=1, churn_images=60, churn_kill_at=20)
    result = fleet_sim.dies_mid_burst(args)
    before, after = result["local before"], result["local after"]
    assert after["starts"] < before["starts"] and after["instance_seconds"] < before["instance_seconds"]
    assert after["images"] == before["images"] == 60 and after["p95_latency_s"] <= before["p95_latency_s"]
    assert result["aws after"]["starts"] <= result["aws before"]["starts"]
    assert "starts/h" in fleet_sim.churn_table(result)
