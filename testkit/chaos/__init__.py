"""Fault injection against the real local stack (run_chaos), for tests/test_chaos.py and benchmarks/chaos.py."""
from testkit.chaos.checks import tracebacks, unexplained_deaths
from testkit.chaos.harness import run_chaos
from testkit.chaos.pids import serving_pids, worker_pids_by_instance
from testkit.chaos.plan import FAULT_KINDS, ChaosConfig, Photo, plan_faults, plan_uploads, poison_bodies
from testkit.chaos.report import ChaosReport

__all__ = ["FAULT_KINDS", "ChaosConfig", "ChaosReport", "Photo", "plan_faults", "plan_uploads", "poison_bodies",
           "run_chaos", "serving_pids", "tracebacks", "unexplained_deaths", "worker_pids_by_instance"]
