"""What a chaos run records: each upload, each fault, and the report of figures and problems."""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

from testkit.chaos.plan import ChaosConfig, Photo

log = logging.getLogger(__name__)
CRASH_LINE = re.compile(r"worker pid (\d+) of (\S+) exited \(code (-?\d+)\) while its instance runs")


@dataclass
class ClientUpload:
    """One photo a client uploads, retried after a 503 or no answer (each attempt is a new upload)."""

    number: int
    photo: Photo
    image_id: str | None = None
    refused: str | None = None              # a 4xx answer: not accepted, and not retried
    answers: Counter = field(default_factory=Counter)


@dataclass
class Fault:
    """One injected fault: when, what, and what exactly it hit."""

    at_s: float
    kind: str
    detail: str = ""
    pids: list = field(default_factory=list)
    done: bool = False


@dataclass
class ChaosReport:
    """The figures of one run and every check that did not hold."""

    config: ChaosConfig
    submitted: int = 0
    extra_uploads: int = 0      # of those, bursts sent so that a fault found work in hand
    accepted: int = 0
    refused: int = 0
    answers: Counter = field(default_factory=Counter)
    faults: list = field(default_factory=list)
    poison_sent: int = 0
    poison_dead: int = 0   # of those, the ones that are no job: each must reach the dead-letter queue
    final_states: Counter = field(default_factory=Counter)
    lost: list = field(default_factory=list)
    rewritten: list = field(default_factory=list)
    wrong: list = field(default_factory=list)
    unexplained_exits: list = field(default_factory=list)
    tracebacks: list = field(default_factory=list)
    orphans: Counter = field(default_factory=Counter)
    dead_letters: int | None = None
    drain_s: float | None = None
    zero_s: float | None = None
    stack_exit: int | None = None
    problems: list = field(default_factory=list)

    def problem(self, text: str) -> None:
        log.info("chaos problem: %s", text)
        self.problems.append(text)

    @property
    def crashed_by_input(self) -> int:
        """Worker deaths nobody caused on purpose: bad input (or a bug) killed them."""
        return sum(1 for line in self.unexplained_exits if CRASH_LINE.search(line))

    def lines(self) -> list[str]:
        """The figures, for people."""
        injected = Counter(f.kind for f in self.faults if f.done)
        return [
            f"seed {self.config.seed}: {self.submitted} uploads submitted ({self.extra_uploads} of them to give "
            f"faults work in hand), {self.accepted} accepted (202), "
            f"{self.refused} refused (4xx); {sum(self.answers.values())} attempts answered {dict(self.answers)}",
            f"faults injected: {dict(injected)} of {dict(Counter(f.kind for f in self.faults))} planned; "
            f"{self.poison_sent} poison messages ({self.poison_dead} of them no job)",
            *[f"  {f.at_s:6.1f} s {f.kind}: {f.detail}" for f in self.faults],
            f"final states: {dict(self.final_states)}",
            f"lost {len(self.lost)}, duplicated (rewritten once final) {len(self.rewritten)}, "
            f"wrong answers {len(self.wrong)}, crashed by input {self.crashed_by_input}, "
            f"unexplained exits {len(self.unexplained_exits)}, tracebacks {len(self.tracebacks)}",
            f"rows of unanswered uploads: {dict(self.orphans)}; dead letters {self.dead_letters}",
            f"time to drain {_seconds(self.drain_s)}; fleet back to zero {_seconds(self.zero_s)} later; "
            f"stack exit code {self.stack_exit}",
            f"problems: {len(self.problems)}", *[f"  - {p}" for p in self.problems],
        ]


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
