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

The same figures, with the decision's launches and terminations, are in the fleet table under
kind "decision" (key: ISO time), see controller/loop.py.
"""
from __future__ import annotations

METRIC_NAMES = ("QueueVisible", "QueueInFlight", "DeadLetterVisible", "BacklogPerInstance",
                "TargetBacklogPerInstance", "DesiredInstances", "RunningInstances", "PendingInstances")


def tick_values(snapshot, target: int, desired: int) -> dict[str, float]:
    """This tick's value of every metric in METRIC_NAMES."""
    running, pending = snapshot.count("running"), snapshot.count("pending")
    return {
        "QueueVisible": snapshot.visible,
        "QueueInFlight": snapshot.in_flight,
        "DeadLetterVisible": snapshot.dead_letters,
        "BacklogPerInstance": snapshot.backlog / max(1, running + pending),
        "TargetBacklogPerInstance": target,
        "DesiredInstances": desired,
        "RunningInstances": running,
        "PendingInstances": pending,
    }
