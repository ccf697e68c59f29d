"""The stack's processes as the chaos run finds them in /proc: by module, by instance, serving a port."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from testkit.procs import descendants
from testkit.stack import LocalStack


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _runs_module(argv: list[str], module: str) -> bool:
    return any(a == "-m" and b == module for a, b in zip(argv, argv[1:]))


def module_pids(stack: LocalStack, module: str) -> list[int]:
    """Processes of the stack's tree running `python -m module`, oldest (lowest pid) first."""
    return sorted(pid for pid in descendants(stack.proc.pid) if _runs_module(_argv(pid), module))


def supervised_pid(stack: LocalStack, module: str) -> list[int]:
    """The supervisor's own child running `python -m module` (not the processes that one forked)."""
    return [pid for pid in module_pids(stack, module) if pid in _children(stack.proc.pid)]


def worker_pids_by_instance(stack: LocalStack) -> dict[str, int]:
    """Each worker process by the instance id the local host gave it."""
    found = {}
    for pid in module_pids(stack, "app_tier"):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"SIGHTFLEET_INSTANCE_ID="):
                found[entry.split(b"=", 1)[1].decode()] = pid
    return found


def web_worker_pids(stack: LocalStack) -> list[int]:
    """gunicorn workers of the web tier: children of the master, the gunicorn directly under the supervisor."""
    return sorted(child for master in supervised_pid(stack, "gunicorn") for child in _children(master))


def serving_pids(port: int, pids: list[int]) -> list[int]:
    """Those of pids holding an established TCP connection on 127.0.0.1:port: serving a request now."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":   # 01: ESTABLISHED
            inodes.add(f"socket:[{fields[9]}]")
    return [pid for pid in pids if inodes & _open_files(pid)]


def _open_files(pid: int) -> set[str]:
    """What each open file descriptor of pid points at ("socket:[inode]" for sockets)."""
    found = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                found.add(os.readlink(fd))
            except OSError:
                continue   # closed meanwhile
    except OSError:
        pass   # the process ended
    return found


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()}
    except OSError:
        return set()


def resume(pids: list[int]) -> None:
    """SIGCONT each process (those already gone are skipped)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
