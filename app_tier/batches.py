"""The batches a worker runs, in order: the one place that receives ahead and feeds the pipeline.

`for batch in Batches(...)` gives each received batch (None for a poll that brought nothing). A batch
comes from a long poll, unless the one before it was full (a backlog): then it was received ahead,
by a poll without waiting made while that one ran, and its first chunks went into the pipeline
before that one's last came out, so the models go straight on from one batch to the next.

A batch's `chunks()` feed the pipeline: each chunk of images is submitted AHEAD chunks before it is
handed to the runner, which collects its outcomes and stores them (app_tier/jobs.py).
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Protocol, TypeVar

from app_tier.pipeline import ImageInput, Outcome
from sightfleet.contracts import Job, Result
from sightfleet.interfaces import Message

if TYPE_CHECKING:
    from app_tier.pipeline.pipeline import Pending

log = logging.getLogger(__name__)
T = TypeVar("T")
@dataclass(eq=False)
class JobInProgress:
    """One received message on its way; `ended` says how the way ended, once it has."""

    message: Message
    job: Job | None = None
    result: Result | None = None
    data: bytes | None = None
    failing: bool = False
    ended: str | None = None


class Runner(Protocol):
    """What Batches needs of the job path (app_tier/jobs.py's BatchRunner)."""

    def take(self, messages: list[Message]) -> Batch | None: ...

    def hand_back(self, batch: Batch) -> None: ...

    def receive_ahead(self, poll: Callable[[], list[Message]]) -> Future[Batch | None]: ...


# A chunk of jobs_in_progress and its forward passes under way (None: the pipeline refused the chunk).
Submitted = tuple[list["JobInProgress"], "Pending | None"]


class Feedable(Protocol):
    """What the job path needs of the pipeline (app_tier/pipeline/pipeline.py's Pipeline, or its loader)."""

    @property
    def AHEAD(self) -> int: ...  # noqa: N802 - the pipeline's constant

    def chunks(self, items: Iterable[T]) -> Iterator[list[T]]: ...

    def submit(self, inputs: Sequence[ImageInput]) -> Pending: ...

    def collect(self, pending: Pending) -> list[Outcome]: ...


@dataclass(eq=False)
class Batch:
    """Received messages, now held, whose claims and fetches run on the intake threads."""

    messages: list[Message]
    claimed: Iterator[JobInProgress | None]
    # Its first chunks, submitted while the batch before it finished.
    started: list[Submitted] = field(default_factory=list)
    # Starts receiving the batch after this one; Batches sets it for a full batch.
    receive_following: Callable[[], Future[Batch | None]] | None = None

    def jobs_in_progress(self) -> Iterator[JobInProgress]:
        """The jobs_in_progress that passed claim and fetch, not yet taken, as their claims complete."""
        return (job_in_progress for job_in_progress in self.claimed if job_in_progress is not None)

    def chunks(self, pipeline: Feedable) -> Iterator[Submitted]:
        """This batch's chunks, each submitted AHEAD chunks before it is yielded for collecting.

        When a batch follows, its first chunks are submitted before this batch's last are yielded.
        """
        following = self.receive_following() if self.receive_following else None
        queued = deque(self.started)
        for chunk in pipeline.chunks(self.jobs_in_progress()):
            queued.append(_submit(pipeline, chunk))
            if len(queued) > pipeline.AHEAD:
                yield queued.popleft()
        batch = following.result() if following else None
        if batch:
            batch.started = [_submit(pipeline, c) for c in islice(pipeline.chunks(batch.jobs_in_progress()), pipeline.AHEAD)]
        while queued:
            yield queued.popleft()


def _submit(pipeline: Feedable, chunk: list[JobInProgress]) -> Submitted:
    """Prepare a chunk of images here and queue its forward passes."""
    try:
        inputs = [ImageInput(id=t.job.id, data=t.data, filename=t.job.filename, features=t.job.features)
                  for t in chunk]
        return chunk, pipeline.submit(inputs)
    except Exception:  # noqa: BLE001 - the pipeline answers bad images itself; this is a bug
        log.exception("the pipeline refused a chunk of %s images", len(chunk))
        return chunk, None


class Batches:
    """Each batch the worker runs, in order; None for a poll that brought nothing."""

    def __init__(self, runner: Runner, poll: Callable[[], list[Message]],
                 poll_ahead: Callable[[], list[Message]], full: int):
        """poll: the long poll; poll_ahead: a poll without waiting; full: the receive batch size."""
        self._runner = runner
        self._poll = poll
        self._poll_ahead = poll_ahead
        self._full = full
        self._ahead: Future[Batch | None] | None = None

    def __iter__(self) -> Iterator[Batch | None]:
        while True:
            batch = self._take_ahead() or self._runner.take(self._poll())
            if batch and len(batch.messages) >= self._full:
                batch.receive_following = self._receive_ahead
            yield batch

    def ahead(self) -> Batch | None:
        """The batch received ahead, which runs next; None when there is none."""
        return self._ahead.result() if self._ahead else None

    def hand_back(self) -> None:
        """Give back the batch received ahead, if any (the worker stops before running it)."""
        batch = self._take_ahead()
        if batch:
            self._runner.hand_back(batch)

    def _receive_ahead(self) -> Future[Batch | None]:
        self._ahead = self._runner.receive_ahead(self._poll_ahead)
        return self._ahead

    def _take_ahead(self) -> Batch | None:
        ahead, self._ahead = self._ahead, None
        return ahead.result() if ahead else None
