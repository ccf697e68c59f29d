"""Settings of one load run, read once from the command line and passed inward."""
from __future__ import annotations

from dataclasses import dataclass, field

SYNC, API = "sync", "api"
MODES = (SYNC, API)


@dataclass(frozen=True)
class LoadConfig:
    """What to send, where, how hard, and how patiently."""

    url: str
    mode: str = SYNC
    num_requests: int | None = None  # None: one request per image
    concurrency: int = 10
    retries: int = 2
    timeout_s: float = 120.0  # one image end to end: retries and polling included
    connect_timeout_s: float = 10.0  # a hung connect gives up early so a retry can still run
    backoff_s: float = 0.5  # first retry delay; doubles per retry, with jitter
    max_backoff_s: float = 30.0  # also caps a server's Retry-After
    wait_s: float = 20.0  # api mode: ?wait= seconds; 0 polls only
    poll_interval_s: float = 0.1  # api mode: first poll delay; doubles up to max_poll_interval_s
    max_poll_interval_s: float = 2.0
    album: str | None = None
    fleet_interval_s: float = 1.0  # how often /api/ops/summary is sampled
    progress: bool = True
    # Sent as `Authorization: Bearer`; None: no credentials (the course endpoint stays open to them).
    # Left out of repr, and of the JSON report (cli.write_json), so it is never written anywhere.
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.num_requests is not None and self.num_requests < 0:
            raise ValueError("num_requests must not be negative")
        if self.retries < 0 or self.timeout_s <= 0:
            raise ValueError("retries must be >= 0 and timeout positive")


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The Authorization header of an API key; none without one."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
