"""Fleet simulator: Sightfleet's own scaling rules against peers' policies, at AWS scale, event by event.

A discrete-event simulation (a heap of timed events, deterministic for a --seed) of one SQS request
queue, a fleet of EC2 workers and a scaler. Sightfleet's policies run the real code: the controller's
`controller.policy.decide` every tick and the worker's idle rule `app_tier.idle.idle_step` at each
empty long poll; nothing of either is re-implemented here. The peers are modelled from their
documentation (see PEERS below). Every policy drives the same worker: it long-polls, receives up to
`receive_batch` messages (SQS returns as soon as one is there), runs them one after the other and
polls again; only the decision to add, start, stop or remove instances differs.

Measured per trace and policy: instance-seconds (running time only: EC2 does not bill pending or
stopped instances) against the ideal (the sum of the service times: perfectly packed workers that
never start, idle or stop), p50/p95/p99 latency (arrival to result), peak live instances, and cost
with EC2's per-second billing and its 60-second minimum at each start.

Timings (AWS, c5.large: 2 vCPU, 4 GiB, supports hibernation) and their sources:
- launch_pending_s 18: RunInstances call about 1.5 s and pending to running 16.4-16.6 s whatever
  the instance family (t3, m6i, m7i, c7i: github.com/brevdev/ec2-coldboot-research, 25.8 s to SSH on
  average); daemonology.net/blog/2021-08-12-EC2-boot-time-benchmarking.html saw 1.5 s + 4.9 s on c5.
  Not billed: "AWS starts billing ... once it enters the running state".
- boot_s 8: running to the worker's unit started. brevdev measured boot to SSH 3.2 s on Amazon
  Linux 2023; daemonology measured 17-23 s to an open port on older AMIs. 8 s is our estimate for
  AL2023 with cloud-init and systemd starting the worker.
- model_load_s 12: the worker's start (import, models loaded) is 2.1-2.4 s here, but a
  new instance's root volume is created from a snapshot and its blocks are fetched from S3 on first
  read ("increased I/O latency", docs.aws.amazon.com/ebs/latest/userguide/initalize-volume.html).
  The worker reads about 600 MB of Python, torch and models at start; at an effective 60 MB/s that
  is about 10 s more. Our estimate (a provisioned initialization rate of 100-300 MiB/s, same page,
  or fast snapshot restore would cut it).
- resume_pending_s 12, resume_s 5: a hibernated start is pending like a stopped one (docs: "it can
  take a few minutes ... to enter the running state", hibernating-resuming.html; we take 12 s, an
  estimate below the cold 16.5 s since no volume is created), then the OS reads the RAM image back
  from the (now initialised) root volume (instance-hibernate-overview.html): the worker holds about
  650 MiB (docs/local-stack.md, peak RSS), at gp3's baseline 125 MiB/s about 5 s, billed.
- stop_s 5: hibernating writes the same 650 MiB to the volume; billed ("we do charge while it is in
  the stopping state" for hibernation, EC2 user guide, Hibernate).
- service_s 0.217 per image: `benchmarks/scaling.py`'s ideal on this machine, 21.7 s per 100
  images (timings.total per result, two AMD EPYC cores). We take c5.large (a 3.4 GHz
  Xeon, 2 vCPU) as running one worker at the same speed: an estimate, scale with --service-scale.
  Jitter: lognormal, sigma 0.25 (estimate), seeded.
- price: c5.large on demand $0.085 per hour (us-east-1: docs.aws.amazon.com/autoscaling/ec2/userguide/
  weights-spot-price-per-unit-hour-example.html lists c5.2xlarge at $0.34, a quarter of it), billed
  per second with "a one-minute minimum" each time an instance starts (StopInstances API reference).

Peers (what is modelled, from their documentation):
- seed: the course design. Each tick (as Sightfleet's) launches instances so that live = min(cap,
  queued messages); each worker receives one message at a time and terminates its instance as soon
  as it finds the queue empty.
- keda-sqs: KEDA's aws-sqs-queue scaler with its defaults: queueLength 5 ("actual messages" =
  ApproximateNumberOfMessages + ApproximateNumberOfMessagesNotVisible), pollingInterval 30 s,
  cooldownPeriod 300 s (keda.sh/docs/latest/scalers/aws-sqs, reference/scaledobject-spec). KEDA
  activates 0 -> 1 at its poll; from 1 up the HPA decides every 15 s (--horizontal-pod-autoscaler-
  sync-period) on the latest polled metric: desired = ceil(messages / 5) with the HPA's 10 %
  tolerance, at most max(4 instances, +100 %) per 15 s (default scaleUp policies), and scaling down
  only to the highest recommendation of the last 300 s (default scaleDown stabilizationWindowSeconds).
  Back to 0 when the queue has been empty for cooldownPeriod. KEDA scales pods: here each replica is
  an instance, the nodes' own start taking what an instance's start takes.
- asg-target-tracking: EC2 Auto Scaling target tracking on backlog per instance (ApproximateNumber-
  OfMessagesVisible / InService instances, the "Scaling based on Amazon SQS" pattern) with target
  10, Sightfleet's own target. The metric is published every 60 s; target tracking's alarms need 3
  consecutive breaching minutes to scale out and 15 to scale in (the alarms it creates); capacity
  becomes ceil(instances x metric / target). An instance counts toward the metric only after the
  default instance warm-up, which when not set falls back to the group's DefaultCooldown of 300 s;
  while instances warm up, a further scale-out adds only what goes beyond them. Scale-in removes
  idle instances first (we grant it scale-in protection of busy ones). With no instance in service
  the metric is the whole backlog.
- asg-warm-pool: the same group with a warm pool of Hibernated instances (PoolState Hibernated,
  MaxGroupPreparedCapacity defaulting to the group's max size: the pool keeps cap - desired
  prepared). Scale-out takes pooled instances first (a resume); scale-in terminates (ReuseOnScaleIn
  defaults to false) and the pool is refilled by launching new instances that boot, load and
  hibernate: that preparation is running time and is counted.
Both pool policies (sightfleet, asg-warm-pool) start each trace with a full pool (left by earlier
traffic; its preparation is not counted); the others start from an empty fleet.

The goal (at most 1.3x the ideal, p95 no worse than the best peer's) and why, with these
timings, it is out of reach on every trace (each table ends with a goal line):
- Every start costs running time the ideal does not count: a resume 5 s, the stop back into the pool
  5 s, and the shortest empty poll 1 s: 11 s at least (a cold launch 20 s). burst-100 has 21.7 s of
  work: one instance alone is (21.7 + 11) / 21.7 = 1.5x, and fewer than one there is not.
- burst-1000 has 214 s of work: 1.3x leaves 64 s for starts, at most 5 instances, so the last image
  waits at least 214 / 5 + 17 s (pending + resume) = 60 s, against the seed design's p95 of 49 s
  (cap 19) and 39 s (cap 200).
- day: to keep p95 near the best peer's 18 s, an arrival may not wait for a resume (17 s), so one
  instance runs nearly all day: about 7,000 running seconds against 3,371 s of work, 2x at best.
The short grace into the pool (SIGHTFLEET_POOL_GRACE_S, 2 s by default since this simulator) and a
fleet sized by an acceptable latency (sightfleet-latency20) come closest; the controller stopping
surplus idle workers itself was tried here and made the day trace worse (it flaps with the trickle).

The --local mode models benchmarks/scaling.py (40 images, cap 4, idle grace 6 s, pool grace 2 s,
tick 1 s) from that run's own primitives, which scaling.py prints as a ready command ("model check"):
launch to first poll, the workers' busy time per image in each burst (per instance, the union of its
results' claim-to-final spans: a worker overlaps its images, so this is less than their timings.total,
and in the cold burst it includes the wait for the models, claimed before they are in) and how long
each burst took to submit (its arrivals are spread over that, as the controller saw them). No jitter:
the run's mean is the input. It predicts what the run measured by sampling: instance-seconds.
Stated tolerance: 20 % on the median deviation over repeated runs; a single run's warm figure varies
too much for a per-run bound (19.9 to 35.1 per 100 images in six runs of 2026-12-01, by how many pooled
workers the controller's ticks resume before the queue drains). On six runs of 2026-12-01 (after the
worker's poll length became app_tier.idle.poll_wait_s, shared with this model), model against run:
cold -19 %, -12 %, -11 %, +1 %, +4 %, +5 %; warm +7 %, +8 %, +11 %, +25 %, +27 %, +32 %; medians
cold -5 %, warm +18 %: within. The warm model runs high in every run, by 0.3-1 s of running time per
instance; where that comes from is not pinned down (a candidate: the run's four workers share two
cores, so a worker that resumes last finds less work left than the model, whose instances each have
their own CPU, gives it).

    .venv/bin/python benchmarks/fleet_sim.py [--seed 1] [--json FILE] [--local] [--traces ...]
"""
from __future__ import annotations

import argparse
import heapq
import json
import logging
import math
import random
import sys
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from app_tier.idle import POOL, RETIRE, IdleRules, idle_left_s, idle_step, poll_wait_s  # noqa: E402
from controller.policy import Member, Observation, PolicyConfig, decide, target_backlog  # noqa: E402
from sightfleet.config import Settings  # noqa: E402

log = logging.getLogger(__name__)
# The policy reads times as epoch seconds, where 0 means "none": the simulated clock starts at 0.
EPOCH_S = 1_000_000_000.0
HORIZON_S = 3600.0   # a run ends at most this long after the last arrival, whatever is still up
GOAL_RATIO = 1.3     # instance-seconds at most 1.3x the ideal


@dataclass(frozen=True)
class Timings:
    """How long each step of an instance's life takes, and what a second of it costs."""

    launch_pending_s: float = 18.0
    boot_s: float = 8.0
    model_load_s: float = 12.0
    resume_pending_s: float = 12.0
    resume_s: float = 5.0
    stop_s: float = 5.0
    service_s: float = 0.217
    service_sigma: float = 0.25
    price_per_s: float = 0.085 / 3600
    min_billed_s: float = 60.0
    tick_s: float = 2.0           # Settings.controller_tick_s
    receive_wait_s: int = 20      # Settings.receive_wait_s
    receive_batch: int = 10       # Settings.receive_batch

    @property
    def cold_s(self) -> float:
        """Billed seconds from running to the first poll."""
        return self.boot_s + self.model_load_s


AWS = Timings()
# This machine, as benchmarks/scaling.py runs it (cap 4, tick 1 s): the local host starts a worker
# process about a second after the launch (its poll), the process start and model load of four
# workers at once on two cores take about 8 s (9.0 s to the first poll; 12.5 s on
# a busy machine), a resume is SIGCONT (0.1 s), a stop SIGSTOP; per image 0.217 s (21.7 s per 100).
# scaling.py counts pending instances as live, so here nothing is pending: the host's reaction is boot_s.
LOCAL = Timings(launch_pending_s=0.0, boot_s=1.0, model_load_s=8.0, resume_pending_s=0.0, resume_s=0.3,
                stop_s=0.0, service_s=0.217, service_sigma=0.0, min_billed_s=0.0, tick_s=1.0)


@dataclass
class Job:
    arrival: float
    service_s: float
    done: float | None = None


@dataclass
class Instance:
    """One instance and its worker; `phase` is what the simulator schedules on."""

    id: str
    launched_at: float
    state: str = "pending"                 # EC2: pending, running, stopping, stopped, terminated
    phase: str = "starting"                # starting, waiting, busy, stopping, stopped, gone
    started_at: float | None = None
    pooled_at: float | None = None
    last_work: float = 0.0
    held: list = field(default_factory=list)
    generation: int = 0                    # invalidates events scheduled for an earlier phase
    running_since: float | None = None
    segments: list = field(default_factory=list)   # billed running spells, seconds
    died_at: float | None = None           # its worker was killed, holding died_holding messages
    died_holding: int = 0

    @property
    def reported(self) -> str | None:
        return {"waiting": "idle", "busy": "busy"}.get(self.phase)


@dataclass
class Outcome:
    """What one run measured."""

    instance_s: float
    ideal_s: float
    latencies: list
    peak: int
    cost: float
    starts: int

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        return {"instance_seconds": round(self.instance_s, 1), "ideal_seconds": round(self.ideal_s, 1),
                "instance_seconds_ratio": round(self.instance_s / self.ideal_s, 3) if self.ideal_s else None,
                "p50_latency_s": round(percentile(lat, 50), 2), "p95_latency_s": round(percentile(lat, 95), 2),
                "p99_latency_s": round(percentile(lat, 99), 2), "peak_instances": self.peak,
                "cost_usd": round(self.cost, 4), "starts": self.starts, "images": len(lat)}


def percentile(ordered: list, pct: float) -> float:
    """Nearest-rank percentile of an ordered list (nan when empty)."""
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


class Sim:
    """The queue, the instances and the clock; a scaler and a worker rule act on it."""

    def __init__(self, jobs: list[Job], timings: Timings, policy: "Policy", cap: int, seed: int):
        self.t = timings
        self.policy = policy
        self.cap = cap
        self.rng = random.Random(seed)
        self.jobs = jobs
        self.now = 0.0
        self.visible: deque = deque()
        self.instances: dict[str, Instance] = {}
        self.waiting: list = []                # instances in a long poll
        self.quiet_since: float | None = 0.0
        self.peak = 0
        self._events: list = []
        self._seq = 0
        self._ids = 0
        self.done = 0
        self.orphaned = 0                      # in flight with a dead holder, until their visibility lapses
        self.kill_at_done: int | None = None   # kill a worker (die()) when this many images are done
        self.visibility_timeout_s = 60.0

    # -- the clock
    def at(self, when: float, action, *args) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, action, args))

    def run(self, progress=None) -> Outcome:
        for job in self.jobs:
            self.at(job.arrival, self._arrive, job)
        self.policy.prepare(self)
        self.at(0.0, self._tick)
        horizon = max((j.arrival for j in self.jobs), default=0.0) + HORIZON_S
        while self._events and self.now < horizon and (self.done < len(self.jobs) or self.busy_instances()):
            self.now, _, action, args = heapq.heappop(self._events)
            action(*args)
            if progress is not None:
                progress.update(self.done - progress.n)
        return self._outcome()

    def busy_instances(self) -> list[Instance]:
        """Instances that still run (billed) or are still on their way somewhere."""
        return [i for i in self.instances.values() if i.state in ("pending", "running", "stopping")]

    def _tick(self) -> None:
        self.policy.tick(self)
        if self.done < len(self.jobs) or self.busy_instances():
            self.at(self.now + self.policy.tick_s(self), self._tick)

    # -- the queue
    @property
    def in_flight(self) -> int:
        return sum(len(i.held) for i in self.instances.values()) + self.orphaned

    @property
    def backlog(self) -> int:
        return len(self.visible) + self.in_flight

    def _arrive(self, job: Job) -> None:
        self.visible.append(job)
        self.quiet_since = None
        self._deliver()

    def _deliver(self) -> None:
        """Visible messages go to instances in a long poll, each to one of them at random (as SQS does)."""
        while self.waiting and self.visible:
            self._receive(self.waiting.pop(self.rng.randrange(len(self.waiting))))

    def _note_quiet(self) -> None:
        if self.backlog == 0 and self.quiet_since is None:
            self.quiet_since = self.now

    # -- instances
    def live(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.state in ("pending", "running")]

    def pooled(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.state in ("stopping", "stopped")]

    def launch(self, count: int, then_pool: bool = False) -> None:
        for _ in range(count):
            self._ids += 1
            inst = Instance(f"i-{self._ids:05d}", self.now)
            self.instances[inst.id] = inst
            self.at(self.now + self.t.launch_pending_s, self._running, inst, inst.generation,
                    self.t.cold_s, then_pool)
        self._count_peak()

    def add_pooled(self, count: int) -> None:
        """Instances already prepared and hibernated (a full pool at the start of a trace)."""
        for _ in range(count):
            self._ids += 1
            inst = Instance(f"i-{self._ids:05d}", self.now - 3600, state="stopped", phase="stopped",
                            pooled_at=self.now - 3600)
            self.instances[inst.id] = inst

    def start(self, instance_id: str) -> None:
        inst = self.instances[instance_id]
        if inst.state != "stopped":
            return
        inst.state, inst.phase, inst.started_at = "pending", "starting", self.now
        inst.generation += 1
        self.at(self.now + self.t.resume_pending_s, self._running, inst, inst.generation, self.t.resume_s, False)
        self._count_peak()

    def _running(self, inst: Instance, generation: int, billed_start_s: float, then_pool: bool) -> None:
        if inst.generation != generation:
            return
        inst.state, inst.running_since = "running", self.now
        self.at(self.now + billed_start_s, self._ready, inst, generation, then_pool)

    def _ready(self, inst: Instance, generation: int, then_pool: bool) -> None:
        if inst.generation != generation:
            return
        if then_pool:
            self.stop(inst)
            return
        inst.last_work = self.now
        self._poll(inst)

    def stop(self, inst: Instance) -> None:
        """Hibernate into the pool: stopping (billed) then stopped."""
        self._leave_poll(inst)
        inst.state, inst.phase, inst.pooled_at = "stopping", "stopping", self.now
        inst.generation += 1
        self.at(self.now + self.t.stop_s, self._stopped, inst, inst.generation)

    def _stopped(self, inst: Instance, generation: int) -> None:
        if inst.generation != generation:
            return
        self._bill(inst)
        inst.state, inst.phase = "stopped", "stopped"

    def terminate(self, instance_id: str) -> None:
        inst = self.instances[instance_id]
        if inst.state == "terminated":
            return
        self._leave_poll(inst)
        # Held messages go back to the queue (the worker hands them back, or their visibility lapses).
        for job in reversed(inst.held):
            self.visible.appendleft(job)
        inst.held = []
        self._bill(inst)
        inst.state, inst.phase = "terminated", "gone"
        inst.generation += 1
        self._deliver()

    def die(self, visibility_timeout_s: float) -> None:
        """The worker holding the most messages is killed: its instance ends, what it held reappears only
        when its visibility lapses (the last extension is taken as just now: the latest it can be)."""
        holders = sorted((i for i in self.live() if i.held), key=lambda i: (-len(i.held), i.id))
        if not holders:
            return
        inst, jobs = holders[0], list(holders[0].held)
        inst.held, inst.died_at, inst.died_holding = [], self.now, len(jobs)
        self.orphaned += len(jobs)
        self.terminate(inst.id)
        self.at(self.now + visibility_timeout_s, self._reappear, jobs)

    def _reappear(self, jobs: list) -> None:
        self.orphaned -= len(jobs)
        self.visible.extend(jobs)
        self.quiet_since = None
        self._deliver()

    def _bill(self, inst: Instance) -> None:
        if inst.running_since is not None:
            inst.segments.append(self.now - inst.running_since)
            inst.running_since = None

    def _count_peak(self) -> None:
        self.peak = max(self.peak, len(self.live()))

    # -- the worker
    def _leave_poll(self, inst: Instance) -> None:
        if inst in self.waiting:
            self.waiting.remove(inst)

    def _poll(self, inst: Instance) -> None:
        if self.visible:
            self._receive(inst)
            return
        if self.policy.leaves_on_empty_queue:
            self.terminate(inst.id)
            return
        inst.phase = "waiting"
        inst.generation += 1
        self.waiting.append(inst)
        self._note_quiet()
        idle_s = self.now - inst.last_work
        wait_s = poll_wait_s(self.policy.idle_left(self, idle_s), self.t.receive_wait_s)
        self.at(self.now + wait_s, self._poll_timeout, inst, inst.generation)

    def _poll_timeout(self, inst: Instance, generation: int) -> None:
        if inst.generation != generation or inst.phase != "waiting":
            return
        self.waiting.remove(inst)
        step = self.policy.idle_step(self, inst, self.now - inst.last_work)
        if step == POOL:
            self.stop(inst)
        elif step == RETIRE:
            self.terminate(inst.id)
        else:
            self._poll(inst)

    def _receive(self, inst: Instance) -> None:
        batch = [self.visible.popleft() for _ in range(min(self.policy.batch(self), len(self.visible)))]
        inst.held, inst.phase = batch, "busy"
        inst.generation += 1
        finish = self.now
        for job in batch:
            finish += job.service_s
            self.at(finish, self._finish, inst, inst.generation, job)

    def _finish(self, inst: Instance, generation: int, job: Job) -> None:
        if inst.generation != generation:
            return
        job.done = self.now
        inst.held.remove(job)
        self.done += 1
        if self.done == self.kill_at_done:
            self.die(self.visibility_timeout_s)
        self._note_quiet()
        if not inst.held:
            inst.last_work = self.now
            self._poll(inst)

    def _outcome(self) -> Outcome:
        for inst in self.instances.values():
            self._bill(inst)
        segments = [s for i in self.instances.values() for s in i.segments]
        billed = sum(max(s, self.t.min_billed_s) for s in segments)
        return Outcome(instance_s=sum(segments), ideal_s=sum(j.service_s for j in self.jobs),
                       latencies=[j.done - j.arrival for j in self.jobs if j.done is not None], peak=self.peak,
                       cost=billed * self.t.price_per_s, starts=len(segments))

    def observation(self, holders_known: bool = True) -> Observation:
        """The stack as the controller observes it (epoch-like times): live and pooled instances with fresh
        heartbeats saying what they hold, and ended ones whose heartbeat said they held work when they died."""
        def epoch(value: float | None) -> float | None:
            return None if value is None else EPOCH_S + value
        members = tuple(Member(i.id, epoch(i.launched_at), i.state, epoch(self.now) if i.reported else None,
                               i.reported, epoch(i.started_at), epoch(i.pooled_at), len(i.held))
                        for i in self.instances.values() if i.state != "terminated")
        members += tuple(Member(i.id, epoch(i.launched_at), "terminated", epoch(i.died_at), "busy",
                                holding=i.died_holding) for i in self.instances.values() if i.died_at is not None)
        return Observation(epoch(self.now), len(self.visible), self.in_flight, members, epoch(self.quiet_since),
                           holders_known=holders_known)


class Policy:
    """A scaler and the worker's idle rule; the base worker never leaves on its own."""

    name = "base"
    leaves_on_empty_queue = False

    def prepare(self, sim: Sim) -> None:
        """State before the trace starts (a full pool, for the pool policies)."""

    def tick_s(self, sim: Sim) -> float:
        return sim.t.tick_s

    def tick(self, sim: Sim) -> None:
        raise NotImplementedError

    def batch(self, sim: Sim) -> int:
        return sim.t.receive_batch

    def idle_left(self, sim: Sim, idle_s: float) -> float:
        return sim.t.receive_wait_s

    def idle_step(self, sim: Sim, inst: Instance, idle_s: float) -> str | None:
        return None

    def remove_idle_first(self, sim: Sim, count: int) -> None:
        """Terminate `count` live instances, idle ones first (newest first), then the newest busy ones."""
        order = sorted(sim.live(), key=lambda i: (i.phase == "busy", i.phase == "waiting", -i.launched_at))
        for inst in order[:count]:
            sim.terminate(inst.id)


class Sightfleet(Policy):
    """controller.policy.decide every tick, as controller/loop.py calls it; app_tier.idle's rule at each empty poll."""

    def __init__(self, name: str, settings: Settings, prefill: int | None = None, holders_known: bool = True):
        self.name, self.settings, self.rules = name, settings, IdleRules.from_settings(settings)
        self.prefill = settings.warm_pool_size if prefill is None else prefill
        self.config = PolicyConfig.from_settings(settings)
        self.holders_known = holders_known   # False: in-flight messages count whoever holds them (the old rule)

    def prepare(self, sim: Sim) -> None:
        sim.add_pooled(self.prefill)
        # The loop's latency-derived target, from the time per image it measures (here: the mean).
        target = target_backlog(self.settings.acceptable_latency_s, sim.t.service_s,
                                self.settings.target_backlog_per_instance)
        self.config = PolicyConfig.from_settings(self.settings, target)

    def tick(self, sim: Sim) -> None:
        decision = decide(sim.observation(self.holders_known), self.config)
        for instance_id in decision.terminate_ids:
            sim.terminate(instance_id)
        for instance_id in decision.start:
            sim.start(instance_id)
        sim.launch(decision.launch)

    def idle_left(self, sim: Sim, idle_s: float) -> float:
        return idle_left_s(self.rules, idle_s)

    def idle_step(self, sim: Sim, inst: Instance, idle_s: float) -> str | None:
        live = [i.id for i in sorted(sim.live(), key=lambda i: (i.launched_at, i.id))]   # EC2 lists oldest first
        rank = live.index(inst.id) if inst.id in live else None
        return idle_step(self.rules, idle_s, rank, len(sim.pooled()), holds_messages=bool(inst.held))


class Seed(Policy):
    """The course design: one instance per queued message up to the cap; each leaves when the queue is empty."""

    name = "seed"
    leaves_on_empty_queue = True

    def tick(self, sim: Sim) -> None:
        sim.launch(max(0, min(sim.cap, sim.backlog) - len(sim.live())))

    def batch(self, sim: Sim) -> int:
        return 1


class Keda(Policy):
    """KEDA's SQS scaler (defaults) feeding the HPA (defaults); see the module docstring."""

    name = "keda-sqs"
    queue_length, polling_s, cooldown_s = 5, 30.0, 300.0
    hpa_sync_s, tolerance, stabilization_s = 15.0, 0.1, 300.0

    def __init__(self):
        self.metric = 0
        self.next_poll = 0.0
        self.last_active: float | None = None
        self.recommendations: deque = deque()

    def tick_s(self, sim: Sim) -> float:
        return self.hpa_sync_s

    def tick(self, sim: Sim) -> None:
        live = len(sim.live())
        if sim.now >= self.next_poll:
            self.metric, self.next_poll = sim.backlog, sim.now + self.polling_s
            if self.metric > 0:
                self.last_active = sim.now
                if live == 0:
                    sim.launch(1)   # KEDA's activation, at its own poll
                    return
        if live == 0:
            return
        if self.metric == 0 and self.last_active is not None and sim.now - self.last_active >= self.cooldown_s:
            self.remove_idle_first(sim, live)   # KEDA scales to zero after cooldownPeriod
            return
        self._hpa(sim, live)

    def _hpa(self, sim: Sim, live: int) -> None:
        wanted = math.ceil(self.metric / self.queue_length)
        if abs(self.metric / (self.queue_length * live) - 1) <= self.tolerance:
            wanted = live
        self.recommendations.append((sim.now, wanted))
        while self.recommendations[0][0] < sim.now - self.stabilization_s:
            self.recommendations.popleft()
        if wanted > live:   # scale up: at most max(4 instances, +100 %) per sync period
            desired = min(sim.cap, wanted, live + max(4, live))
        else:               # scale down: to the highest recommendation of the stabilization window
            desired = max(1, min(live, max(r for _, r in self.recommendations)))
        if desired > live:
            sim.launch(desired - live)
        elif desired < live:
            self.remove_idle_first(sim, live - desired)


class TargetTracking(Policy):
    """EC2 Auto Scaling target tracking on backlog per instance (defaults); see the module docstring."""

    name = "asg-target-tracking"
    target, period_s, out_points, in_points, warmup_s = 10, 60.0, 3, 15, 300.0

    def __init__(self):
        self.datapoints: deque = deque(maxlen=self.in_points)
        self.last_scale_in = -math.inf

    def tick_s(self, sim: Sim) -> float:
        return self.period_s

    def in_service(self, sim: Sim) -> list[Instance]:
        # The warm-up runs from the launch, or from the start out of the warm pool.
        return [i for i in sim.live() if sim.now - max(i.launched_at, i.started_at or i.launched_at) >= self.warmup_s]

    def tick(self, sim: Sim) -> None:
        warm = self.in_service(sim)
        metric = len(sim.visible) / len(warm) if warm else float(len(sim.visible))
        self.datapoints.append(metric)
        points = list(self.datapoints)
        live = len(sim.live())
        if len(points) >= self.out_points and all(p > self.target for p in points[-self.out_points:]):
            wanted = min(sim.cap, math.ceil(max(1, len(warm)) * metric / self.target))
            warming = live - len(warm)
            self.scale_out(sim, max(0, wanted - len(warm) - warming))
        elif len(points) == self.in_points and all(p < self.target for p in points) \
                and sim.now - self.last_scale_in >= self.warmup_s and live:
            wanted = math.ceil(len(warm) * metric / self.target) if warm else 0
            if wanted < live:
                self.last_scale_in = sim.now
                self.scale_in(sim, live - wanted)

    def scale_out(self, sim: Sim, count: int) -> None:
        sim.launch(count)

    def scale_in(self, sim: Sim, count: int) -> None:
        self.remove_idle_first(sim, count)


class AsgWarmPool(TargetTracking):
    """Target tracking with a warm pool of hibernated instances, refilled by launching into it."""

    name = "asg-warm-pool"

    def prepare(self, sim: Sim) -> None:
        sim.add_pooled(sim.cap)

    def scale_out(self, sim: Sim, count: int) -> None:
        stopped = [i for i in sim.pooled() if i.state == "stopped"][:count]
        for inst in stopped:
            sim.start(inst.id)
        sim.launch(count - len(stopped))

    def scale_in(self, sim: Sim, count: int) -> None:
        super().scale_in(sim, count)
        # The pool keeps cap - desired prepared: new instances boot, load, hibernate (running time).
        refill = sim.cap - len(sim.live()) - len(sim.pooled())
        sim.launch(max(0, refill), then_pool=True)


def sightfleet_policies(cap: int, pool_grace_s: float | None, idle_grace_s: float | None) -> list[Policy]:
    """Sightfleet with a warm pool the size of the cap, the same sized by an acceptable latency of 20 s
    (SIGHTFLEET_ACCEPTABLE_LATENCY_S: fewer instances, each with more work to pay for its start), and
    without a pool (the AWS default). Graces None: the Settings defaults."""
    graces = {k: v for k, v in (("pool_grace_s", pool_grace_s), ("idle_grace_s", idle_grace_s)) if v is not None}
    base = Settings(max_instances=cap, **graces)
    pooled = replace(base, warm_pool_size=cap)
    return [Sightfleet("sightfleet", pooled), Sightfleet("sightfleet-latency20", replace(pooled, acceptable_latency_s=20)),
            Sightfleet("sightfleet-nopool", base)]


def all_policies(cap: int, args) -> list[Policy]:
    return sightfleet_policies(cap, args.pool_grace, args.idle_grace) + [
        Seed(), Keda(), TargetTracking(), AsgWarmPool()]


# -- traces
def burst(count: int, rng: random.Random, t: Timings, spread_s: float = 0.0) -> list[Job]:
    """count images at once, or arriving evenly over spread_s (a submitter that takes that long)."""
    return [Job(spread_s * i / count, service(rng, t)) for i in range(count)]


def day(rng: random.Random, t: Timings, hours: float = 24, hour_s: float = 300.0) -> list[Job]:
    """A day compressed to hour_s seconds an hour: Poisson arrivals, diurnal rate 0.2-3 images/s, four spikes."""
    jobs, now, end = [], 0.0, hours * hour_s
    while True:
        rate = 0.2 + 2.8 * max(0.0, math.sin(math.pi * (now / end)))   # night, a day peak, night
        now += rng.expovariate(rate)
        if now >= end:
            break
        jobs.append(Job(now, service(rng, t)))
    for spike_at in sorted(rng.uniform(0.1, 0.9) * end for _ in range(4)):
        jobs += [Job(spike_at + rng.uniform(0, 10), service(rng, t)) for _ in range(300)]
    return sorted(jobs, key=lambda j: j.arrival)


def service(rng: random.Random, t: Timings) -> float:
    return t.service_s * rng.lognormvariate(-t.service_sigma ** 2 / 2, t.service_sigma)


TRACES = {"burst-100": lambda rng, t: burst(100, rng, t), "burst-1000": lambda rng, t: burst(1000, rng, t),
          "day": lambda rng, t: day(rng, t)}


def simulate(trace: str, policy: Policy, cap: int, t: Timings, seed: int, progress: bool = False) -> dict:
    """One trace under one policy: the summary dict."""
    jobs = TRACES[trace](random.Random(seed), t)
    sim = Sim(jobs, t, policy, cap, seed)
    if not progress:
        return sim.run().summary()
    with tqdm(total=len(jobs), desc=f"{trace} cap {cap} {policy.name}", unit="img", leave=False) as bar:
        return sim.run(bar).summary()


def run_all(args, t: Timings) -> dict:
    out = {"traces": {}}
    for cap in args.caps:
        for trace in args.traces:
            key = f"{trace}/cap-{cap}"
            policies = {p.name: simulate(trace, p, cap, t, args.seed, progress=not args.quiet)
                        for p in all_policies(cap, args)}
            out["traces"][key] = {"policies": policies}
    return out


def table(result: dict) -> str:
    """One table per trace."""
    lines = []
    for key, trace in result["traces"].items():
        first = next(iter(trace["policies"].values()))
        lines.append(f"\n{key}: {first['images']} images, ideal {first['ideal_seconds']:.0f} instance-s")
        lines.append(f"{'policy':21} {'inst-s':>8} {'ratio':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} "
                     f"{'peak':>5} {'starts':>6} {'cost $':>8}")
        for name, p in trace["policies"].items():
            lines.append(f"{name:21} {p['instance_seconds']:8.0f} {p['instance_seconds_ratio']:6.2f} "
                         f"{p['p50_latency_s']:7.1f} {p['p95_latency_s']:7.1f} {p['p99_latency_s']:7.1f} "
                         f"{p['peak_instances']:5d} {p['starts']:6d} {p['cost_usd']:8.4f}")
        lines.append(goal_line(trace["policies"]))
    return "\n".join(lines)


def goal_line(policies: dict) -> str:
    """The goal on one trace: Sightfleet at most 1.3x the ideal, p95 no worse than the best peer's."""
    peers = {name: p for name, p in policies.items() if not name.startswith("sightfleet")}
    best = min(peers, key=lambda name: peers[name]["p95_latency_s"])
    ours = [f"{name} {'meets' if p['instance_seconds_ratio'] <= GOAL_RATIO else 'misses'} the ratio, "
            f"{'meets' if p['p95_latency_s'] <= peers[best]['p95_latency_s'] else 'misses'} the p95"
            for name, p in policies.items() if name.startswith("sightfleet")]
    return f"goal: best peer p95 {peers[best]['p95_latency_s']:.1f} s ({best}); " + "; ".join(ours)


def local_check(args) -> dict:
    """benchmarks/scaling.py's run in the model: a burst into an empty fleet, then into the warm pool it left.

    The model takes the run's own primitives (launch to first poll, mean timings.total per image in
    each burst: contention on two cores makes the second differ) and predicts what it did not
    measure directly: instance-seconds, their ratio to the ideal, and the drain.
    """
    cold = replace(LOCAL, model_load_s=max(0.0, args.local_first_poll - LOCAL.boot_s), service_s=args.local_service[0])
    warm = replace(LOCAL, service_s=args.local_service[-1])
    settings = Settings(max_instances=args.local_cap, warm_pool_size=args.local_cap, idle_grace_s=args.local_idle_grace,
                        pool_grace_s=args.local_pool_grace, controller_tick_s=LOCAL.tick_s)
    rng = random.Random(args.seed)
    out = {}
    submits = args.local_submit * 2 if len(args.local_submit) == 1 else args.local_submit
    for what, t, pooled, submit_s in (("cold", cold, 0, submits[0]), ("warm", warm, args.local_cap, submits[-1])):
        sim = Sim(burst(args.local_images, rng, t, submit_s), t, Sightfleet("sightfleet", settings, pooled),
                  args.local_cap, args.seed)
        out[what] = sim.run().summary()
    return out


def dies_mid_burst(args) -> dict:
    """The churn after a death: cap 2, pool 2, a burst, and the worker holding the most messages killed mid-burst.

    Run with in-flight counted whoever holds it (before) and only with a live holder or a visibility
    deadline near (after), on AWS's timings and on this machine's (a resume is a SIGCONT there, which
    is how the churn was seen): starts, starts per hour of the run, instance-seconds, cost and latency.
    """
    settings = Settings(max_instances=2, warm_pool_size=2, idle_grace_s=args.idle_grace or 60.0,
                        pool_grace_s=args.pool_grace if args.pool_grace is not None else 5.0)
    out = {}
    for where, t in (("aws", AWS), ("local", LOCAL)):
        for what, known in (("before", False), ("after", True)):
            rng = random.Random(args.seed)
            sim = Sim(burst(args.churn_images, rng, t), t, Sightfleet(what, settings, holders_known=known), 2,
                      args.seed)
            sim.kill_at_done, sim.visibility_timeout_s = args.churn_kill_at, settings.visibility_timeout_s
            summary = sim.run().summary()
            out[f"{where} {what}"] = {**summary, "span_s": round(sim.now, 1),
                                      "starts_per_hour": round(summary["starts"] * 3600 / max(sim.now, 1.0), 1)}
    return out


def churn_table(result: dict) -> str:
    lines = [f"{'timings, rule':14} {'starts':>6} {'starts/h':>9} {'inst-s':>7} {'cost $':>8} {'p95 s':>6} "
             f"{'span s':>7}"]
    for name, p in result.items():
        lines.append(f"{name:14} {p['starts']:6d} {p['starts_per_hour']:9.1f} {p['instance_seconds']:7.0f} "
                     f"{p['cost_usd']:8.5f} {p['p95_latency_s']:6.1f} {p['span_s']:7.1f}")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--traces", nargs="+", default=list(TRACES), choices=list(TRACES))
    parser.add_argument("--caps", nargs="+", type=int, default=[19, 200])
    parser.add_argument("--idle-grace", type=float, help="Sightfleet's idle grace (s; default: Settings')")
    parser.add_argument("--pool-grace", type=float, help="Sightfleet's grace into the pool (s; default: Settings')")
    parser.add_argument("--service-scale", type=float, default=1.0, help="per-image time on the instance type")
    parser.add_argument("--local", action="store_true", help="model benchmarks/scaling.py on this machine")
    parser.add_argument("--local-images", type=int, default=40)
    parser.add_argument("--local-cap", type=int, default=4)
    parser.add_argument("--local-idle-grace", type=float, default=6.0)
    parser.add_argument("--local-pool-grace", type=float, default=2.0)
    parser.add_argument("--local-first-poll", type=float, default=LOCAL.cold_s,
                        help="launch to first poll in the cold burst of the run to compare with (s)")
    parser.add_argument("--local-service", type=float, nargs="+", default=[LOCAL.service_s],
                        help="mean timings.total per image in the run's cold (and warm) burst (s)")
    parser.add_argument("--local-submit", type=float, nargs="+", default=[0.0],
                        help="seconds the run's cold (and warm) burst took to submit (its 'burst submitted'):"
                             " the arrivals are spread over them, as the controller saw them")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--churn", action="store_true", help="a worker killed mid-burst: the in-flight rule "
                                                             "before and after (cap 2, pool 2)")
    parser.add_argument("--churn-images", type=int, default=60)
    parser.add_argument("--churn-kill-at", type=int, default=20, help="kill when this many images are done")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.churn:
        result = dies_mid_burst(args)
        sys.stdout.write(churn_table(result) + "\n")
    elif args.local:
        result = local_check(args)
        for what, summary in result.items():
            per_100 = 100 / summary["images"]
            sys.stdout.write(f"{what}: instance-seconds/100 {summary['instance_seconds'] * per_100:.1f} used, "
                             f"{summary['ideal_seconds'] * per_100:.1f} ideal: ratio "
                             f"{summary['instance_seconds_ratio']:.2f}x; p99 latency "
                             f"{summary['p99_latency_s']:.1f} s, peak {summary['peak_instances']}\n")
    else:
        t = replace(AWS, service_s=AWS.service_s * args.service_scale)
        result = run_all(args, t)
        sys.stdout.write(table(result) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
