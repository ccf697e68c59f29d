"""CloudWatch metrics the controller publishes every tick, in the stack's namespace.

Namespace: `Sightfleet/<prefix>` (settings.names.metrics_namespace), no dimensions, unit Count,
high-resolution storage. One datapoint per metric per tick:

| metric | meaning |
|---|---|
| QueueVisible | request-queue messages waiting (ApproximateNumberOfMessages) |
| QueueInFlight | request-queue messages held by workers (ApproximateNumberOfMessagesNotVisible) |
| DeadLetterVisible | messages in the dead-letter queue |
| BacklogPerInstance | (visible + in-flight) / live instances (the backlog itself when none live) |
| TargetBacklogPerInstance | the target the policy used this tick |
| DesiredInstances | the policy's desired fleet size |
| RunningInstances | worker instances in state running |
| PendingInstances | worker instances in state pending (incl. launches EC2 does not list yet) |
| PooledInstances | worker instances in the warm pool (stopping or stopped) |
| SilentWorkersReplaced | workers terminated this tick for sending no heartbeat (alarmed: sightfleet/deploy/alarms.py) |

The same figures, with the decision's launches and terminations, are in the fleet table under
kind "decision" (key: ISO time), see controller/loop.py.
"""
from __future__ import annotations

SILENT_REASON = "no heartbeat"   # how controller/policy.py words the termination of a silent worker

METRIC_NAMES = ("QueueVisible", "QueueInFlight", "DeadLetterVisible", "BacklogPerInstance",
                "TargetBacklogPerInstance", "DesiredInstances", "RunningInstances", "PendingInstances",
                "PooledInstances", "SilentWorkersReplaced")


def tick_values(record: dict) -> dict[str, float]:
    """This tick's value of every metric in METRIC_NAMES, from its decision record (controller/loop.py)."""
    return {
        "QueueVisible": record["visible"],
        "QueueInFlight": record["in_flight"],
        "DeadLetterVisible": record["dead_letters"],
        "BacklogPerInstance": record["backlog"] / max(1, record["running"] + record["pending"]),
        "TargetBacklogPerInstance": record["target"],
        "DesiredInstances": record["desired"],
        "RunningInstances": record["running"],
        "PendingInstances": record["pending"],
        "PooledInstances": record.get("pooled", 0),
        "SilentWorkersReplaced": sum(1 for t in record.get("terminated") or []
                                     if str(t.get("reason", "")).startswith(SILENT_REASON)),
    }
