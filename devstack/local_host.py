"""`python -m devstack.local_host`: the local EC2 host, turning launched instances into worker processes.

moto's RunInstances only records an instance; this host plays the hypervisor. It lists the stack's
workers (pending, running, stopping, stopped) as soon as it is nudged (sightfleet/fleet_nudge.py: each
launch, start, stop or terminate through `Fleet` sends a datagram to the host's abstract socket),
and otherwise POLL_S after a round that saw a change, backing off to IDLE_POLL_S while nothing
changes (one listing costs about 15 ms of the endpoint's and this host's CPU). Each round it:
- boots each new instance: `python -m app_tier` with SIGHTFLEET_INSTANCE_ID=<id>, in its own
  session so signals reach it only from here, and with SIGTERM on the host's death;
- hibernates a stopping or stopped instance: SIGSTOP to the worker's process group (its memory and
  loaded models kept, no CPU used), and resumes it when the instance is pending or running again:
  SIGCONT, the same process carries on. A worker that ended while its instance was stopped (as
  after a plain stop) is booted afresh when the instance is started;
- stops the process of an instance that anyone terminated (SIGTERM, SIGKILL after a grace);
- treats a worker process that exits while its instance still runs as a crashed VM and
  terminates the instance (a retiring worker terminates its instance before it exits);
- on SIGTERM/SIGINT stops every worker the same way and terminates their instances, since
  VMs do not outlive their host. No process is left behind.
- on start, terminates the instances a previous host left running (it was killed: its workers
  got SIGTERM with it and hand back their work), rather than booting a second process under
  the same instance id while the old one finishes its batch. Workers it left frozen in the pool
  hold their SIGTERM until continued: they are found by their instance id and sent SIGCONT.
When the endpoint does not answer (stopped, restarting), a round is skipped and every worker
keeps running: only a listing that succeeds stops anything. When the endpoint comes back without
the instances (restarted with no EC2 state), their workers are stopped as on any termination
(SIGTERM: each hands back the messages it holds) and the controller launches new ones for the
backlog.
Worker output goes to the host's stderr; each worker line carries its instance id.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sightfleet.aws.ec2 import Fleet
from sightfleet.config import settings_or_exit
from sightfleet.errors import SightfleetError
from sightfleet.fleet_nudge import local_host_address
from sightfleet.logs import setup_logging
from sightfleet.procs import die_with_parent, stop_event_on_signals

log = logging.getLogger("devstack.local_host")
REPO = Path(__file__).resolve().parents[1]
WORKER_COMMAND = (sys.executable, "-m", "app_tier")
# After a change the next listing follows within POLL_S; with nothing changing the wait doubles up
# to IDLE_POLL_S. A nudge ends any wait: a launch or start through Fleet is seen within milliseconds.
POLL_S = 0.25
IDLE_POLL_S = 1.0
STOP_GRACE_S = 20.0
LIVE = ("pending", "running")
POOLED = ("stopping", "stopped")
HOSTED = LIVE + POOLED   # the states in which an instance has (or may get back) its process

@dataclass
class VM:
    """One instance's worker process on this host."""

    instance_id: str
    proc: subprocess.Popen
    stop_deadline: float | None = None  # set once SIGTERM was sent
    paused: bool = False                # SIGSTOPped: its instance is stopped (hibernated)


class LocalHost:
    """Keeps one worker process per live instance of the stack, and nothing else."""

    def __init__(self, fleet: Fleet, env: dict[str, str], command=WORKER_COMMAND,
                 stop_grace_s: float = STOP_GRACE_S, poll_s: float = POLL_S, listen: str | None = None,
                 idle_poll_s: float = IDLE_POLL_S):
        """listen: the address to take nudges on (`local_host_address`); without it, a listing every poll_s."""
        self._fleet = fleet
        self._env = dict(env)
        self._command = list(command)
        self._stop_grace_s = stop_grace_s
        self._poll_s = poll_s
        self._idle_poll_s = max(poll_s, idle_poll_s)
        self._listen = listen
        self._last_listed: dict[str, str] | None = None
        self._saw_change = True
        self._vms: dict[str, VM] = {}
        self._exited: list[VM] = []
        self._booted: set[str] = set()  # an instance is booted once; a crashed one is not rebooted
        self._unlisted_since: float | None = None  # while EC2 cannot be read

    def pids(self) -> dict[str, int]:
        """Process id of each worker (running or hibernated), by instance id."""
        return {i: vm.proc.pid for i, vm in self._vms.items()}

    def paused(self) -> set[str]:
        """Instances whose worker process is SIGSTOPped (hibernated)."""
        return {i for i, vm in self._vms.items() if vm.paused}

    def run(self, stop: threading.Event) -> None:
        """Reconcile at each nudge and every poll_s to idle_poll_s until stop is set, then shut down."""
        log.info("local EC2 host running (poll %.2f-%.1f s, stop grace %.0f s)", self._poll_s, self._idle_poll_s,
                 self._stop_grace_s)
        listener = self._listener()
        try:
            while not stop.is_set() and not self.retire_orphans():
                stop.wait(self._poll_s)
            wait_s = self._poll_s
            while not stop.is_set():
                self._step_surviving()
                # Without a listener nothing would cut a longer wait short: keep to poll_s.
                backed_off = min(self._idle_poll_s, wait_s * 2) if listener else self._poll_s
                wait_s = self._poll_s if self._saw_change else backed_off
                _wait_for_nudge(listener, stop, wait_s)
        finally:
            if listener:
                listener.close()
            self.shutdown()

    def _listener(self) -> socket.socket | None:
        """The bound socket nudges arrive on; None (poll only) when there is no address or it is taken."""
        if not self._listen:
            return None
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            listener.bind(self._listen)
        except OSError as exc:
            listener.close()
            log.warning("cannot listen for nudges (%s): another host of this stack? polling every %.2f s",
                        exc, self._poll_s)
            return None
        listener.setblocking(False)
        return listener

    def _step_surviving(self) -> None:
        """step(), logging rather than dying of the unexpected: the workers' host must outlive one bad round."""
        try:
            self.step()
        except Exception:  # noqa: BLE001 - the host ending would take every worker with it
            log.exception("unexpected error in a round of the local EC2 host; trying again")

    def retire_orphans(self) -> bool:
        """Terminate live instances this host did not boot (a previous host's); False if EC2 cannot be read."""
        try:
            orphans = [i.id for i in self._fleet.instances(states=HOSTED) if i.id not in self._booted]
            self._fleet.terminate(orphans)
        except SightfleetError as exc:
            log.warning("cannot list instances at start (%s); trying again", exc)
            return False
        if orphans:
            log.warning("terminated %s instances a previous host left running (their workers ended with it): %s",
                        len(orphans), orphans)
            for pid in frozen_workers(set(orphans)):
                log.warning("worker pid %s was left frozen in the pool by the previous host; continuing it so "
                            "that it ends", pid)
                _continue_to_end(pid)
        return True

    def step(self) -> None:
        """One reconciliation of worker processes with the instances EC2 lists."""
        self._reap()  # before listing: a retiring worker has terminated its instance by the time it exits
        try:
            listed = {i.id: i.state for i in self._fleet.instances(states=HOSTED)}
        except SightfleetError as exc:
            # Said once per outage, not once a second; the workers are left as they are.
            (log.debug if self._unlisted_since else log.warning)(
                "cannot list instances (%s); every worker keeps running, trying again", exc)
            self._unlisted_since = self._unlisted_since or time.monotonic()
            return
        if self._unlisted_since:
            log.info("instances listed again after %.0f s", time.monotonic() - self._unlisted_since)
            self._unlisted_since = None
        self._saw_change, self._last_listed = listed != self._last_listed, listed
        live = {i for i, state in listed.items() if state in LIVE}
        self._settle_exits(live, set(listed) - live)
        for instance_id in sorted(live - self._booted):
            self._boot(instance_id)
        for vm in list(self._vms.values()):
            state = listed.get(vm.instance_id)
            if vm.stop_deadline is not None:
                continue
            if state is None:
                self._stop(vm, "its instance is gone (terminated, or the endpoint restarted without it)")
            elif state in POOLED and not vm.paused:
                self._signal(vm, signal.SIGSTOP, "hibernated: its instance is " + state)
            elif state in LIVE and vm.paused:
                self._signal(vm, signal.SIGCONT, "resumed: its instance is " + state)
        self._kill_overdue()

    def shutdown(self) -> None:
        """Stop every worker (SIGTERM, SIGKILL after the grace), then terminate their instances."""
        for vm in list(self._vms.values()):
            if vm.stop_deadline is None:
                self._stop(vm, "the host is stopping")
        while self._vms:
            self._kill_overdue()
            self._reap()
            time.sleep(0.1)
        self._settle_exits(set(), set())
        try:
            live = {i.id for i in self._fleet.instances(states=HOSTED)} & self._booted
            self._fleet.terminate(sorted(live))
            if live:
                log.info("terminated %s with their host: %s", len(live), sorted(live))
        except SightfleetError as exc:
            log.error("could not terminate the instances of stopped workers: %s", exc)
        log.info("local EC2 host stopped; no worker left")

    def _boot(self, instance_id: str) -> None:
        env = {**self._env, "SIGHTFLEET_INSTANCE_ID": instance_id}
        proc = subprocess.Popen(self._command, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=2,
                                start_new_session=True, preexec_fn=die_with_parent)
        self._vms[instance_id] = VM(instance_id, proc)
        self._booted.add(instance_id)
        log.info("instance %s booted: worker pid %s", instance_id, proc.pid)

    def _stop(self, vm: VM, why: str) -> None:
        log.info("stopping worker pid %s of %s: %s", vm.proc.pid, vm.instance_id, why)
        vm.stop_deadline = time.monotonic() + self._stop_grace_s
        try:
            vm.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        if vm.paused:   # a hibernated worker handles its SIGTERM once it runs again
            self._signal(vm, signal.SIGCONT, "resumed to stop")

    def _signal(self, vm: VM, signum: signal.Signals, what: str) -> None:
        """SIGSTOP or SIGCONT to the worker's whole process group (it leads its own session)."""
        try:
            os.killpg(vm.proc.pid, signum)
        except ProcessLookupError:
            return   # ended meanwhile: the next round settles its exit
        vm.paused = signum == signal.SIGSTOP
        log.info("worker pid %s of %s %s", vm.proc.pid, vm.instance_id, what)

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for vm in self._vms.values():
            if vm.stop_deadline is not None and now > vm.stop_deadline and vm.proc.poll() is None:
                log.warning("worker pid %s of %s outlived its %.0f s grace; killing it",
                            vm.proc.pid, vm.instance_id, self._stop_grace_s)
                vm.proc.kill()

    def _reap(self) -> None:
        for instance_id, vm in list(self._vms.items()):
            if vm.proc.poll() is not None:
                del self._vms[instance_id]
                self._exited.append(vm)

    def _settle_exits(self, live: set[str], pooled: set[str]) -> None:
        """Log each exit; an exit while the instance still runs terminates it, like a crashed VM.

        One whose instance is stopped is booted afresh when the instance starts, like a plain stop.
        """
        exited, self._exited = self._exited, []
        for vm in exited:
            code = vm.proc.returncode
            if vm.instance_id in pooled:
                log.info("worker pid %s of %s exited (code %s) while its instance is stopped; a start boots "
                         "a new one", vm.proc.pid, vm.instance_id, code)
                self._booted.discard(vm.instance_id)
                continue
            if vm.instance_id not in live:
                log.info("worker pid %s of %s exited (code %s)", vm.proc.pid, vm.instance_id, code)
                continue
            log.warning("worker pid %s of %s exited (code %s) while its instance runs; terminating the "
                        "instance as EC2 would a crashed VM", vm.proc.pid, vm.instance_id, code)
            try:
                self._fleet.terminate([vm.instance_id])
            except SightfleetError as exc:
                log.error("could not terminate %s (%s); trying again", vm.instance_id, exc)
                self._exited.append(vm)


def _wait_for_nudge(listener: socket.socket | None, stop: threading.Event, wait_s: float) -> None:
    """Until a nudge arrives (every one waiting is read) or wait_s passes; a set stop shows at the next round."""
    if listener is None:
        stop.wait(wait_s)
        return
    ready, _, _ = select.select([listener], [], [], wait_s)
    while ready:
        try:
            listener.recv(64)
        except BlockingIOError:
            return


def frozen_workers(instance_ids: set[str]) -> list[int]:
    """Stopped (state T) processes of this user whose SIGHTFLEET_INSTANCE_ID is one of instance_ids."""
    wanted = {f"SIGHTFLEET_INSTANCE_ID={i}".encode() for i in instance_ids}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "T" and wanted & set((entry / "environ").read_bytes().split(b"\0")):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue   # ended meanwhile, or another user's
    return found


def _continue_to_end(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        os.killpg(pid, signal.SIGCONT)
    except (ProcessLookupError, PermissionError):
        pass


def main() -> int:
    setup_logging("local-host")
    settings = settings_or_exit(log)
    if not settings.endpoint_url:
        log.error("the local EC2 host runs workers for a local endpoint only; set AWS_ENDPOINT_URL")
        return 2
    stop = stop_event_on_signals()
    log.info("hosting the workers of stack %s on %s", settings.prefix, settings.endpoint_url)
    LocalHost(Fleet(settings), dict(os.environ), listen=local_host_address(settings)).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
