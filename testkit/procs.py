"""Processes and ports for tests and benchmarks: free ports, polling, and process trees read from /proc."""
from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_prefix(name: str = "t") -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def wait_for(check, timeout_s: float, interval_s: float = 0.2, what: str = "condition"):
    """Poll check() until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def proc_stats() -> dict[int, list[str]]:
    """Every process's /proc/<pid>/stat fields after the command name (state first), in one pass."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue   # ended meanwhile
    return stats


def descendants(pid: int, stats: dict[int, list[str]] | None = None) -> set[int]:
    """Every live process below pid, read from /proc."""
    children: dict[int, list[int]] = {}
    for each, fields in (stats or proc_stats()).items():
        children.setdefault(int(fields[1]), []).append(each)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def tree_cpu_ms(pid: int) -> float:
    """CPU time (user + system) so far of a process and every live process below it, from /proc."""
    stats = proc_stats()
    ticks = sum(int(stats[each][11]) + int(stats[each][12])
                for each in {pid} | descendants(pid, stats) if each in stats)
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
