"""The chaos run's load and plan: real photos with their expected answers, poison bodies, the config, seeded moments."""
from __future__ import annotations

import base64
import io
import json
import random
from dataclasses import dataclass, field

from sightfleet.contracts import FAILED, JOB_VERSION, SUCCEEDED, new_image_id
from testkit.photos import TESTDATA, jpeg_bytes

FAULT_KINDS = ("kill_worker", "kill_controller", "kill_web_worker", "stall_endpoint", "poison")
ALBUM = "chaos"
FIRST_FAULT_S = 3.0         # no fault in the first seconds of the load: the first uploads reach a queue


# --- the load: real photos and what each must come out as ----------------------------------------

@dataclass(frozen=True)
class Photo:
    """One photo of the load and its expected answer: labels (any of `label_words`), or FAILED when `bad`."""

    name: str
    data: bytes
    content_type: str = "image/jpeg"
    label_words: tuple[str, ...] = ()
    bad: bool = False

    def wrong(self, result: dict) -> str | None:
        """Why a final result is the wrong answer for this photo; None when it is right."""
        if self.bad:
            ok = result["status"] == FAILED and (result.get("error") or {}).get("code")
            return None if ok else f"a broken image ended {result['status']} (expected FAILED with a code)"
        if result["status"] != SUCCEEDED:
            return f"a good photo ended {result['status']}: {result.get('error')}"
        names = [label["Name"].lower() for label in result.get("labels") or []]
        if self.label_words and not any(word in name for name in names for word in self.label_words):
            return f"labels {names} have none of {list(self.label_words)}"
        return None


def photo_set() -> list[Photo]:
    """skimage photos with known labels, real camera files from shared/testdata, a large PNG and a broken JPEG."""
    from skimage import data

    samples = TESTDATA / "exif-samples" / "jpg"
    return [
        Photo("chelsea", jpeg_bytes("chelsea"), label_words=("cat",)),
        Photo("coffee", jpeg_bytes("coffee"), label_words=("cup", "espresso", "coffee")),
        Photo("stereo_motorcycle", _encoded(data.stereo_motorcycle()[0], "JPEG"), label_words=("motorcycle",)),
        # Larger than an SQS message: it travels as an S3 pointer job.
        Photo("astronaut-png", _encoded(data.astronaut(), "PNG"), "image/png", label_words=("person",)),
        Photo("Canon_40D", (samples / "Canon_40D.jpg").read_bytes()),
        Photo("DSCN0010-gps", (samples / "gps" / "DSCN0010.jpg").read_bytes()),
        Photo("landscape_6", (samples / "orientation" / "landscape_6.jpg").read_bytes()),
        # JPEG magic and a cut-off body: genuinely bad, so FAILED (or refused at the door) is right.
        Photo("truncated", jpeg_bytes("chelsea")[:9000], bad=True),
    ]


def _encoded(array, image_format: str) -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(array).save(out, image_format)
    return out.getvalue()


# Bodies that are valid jobs after all (unknown fields are ignored): processed, not dead-lettered.
PROCESSED_POISON = frozenset({"200 KB of unknown fields"})


def poison_bodies() -> list[tuple[str, str]]:
    """Request-queue bodies no worker may die of, by name; the job-shaped ones carry a fresh valid id."""
    def job(**changes) -> str:
        body = {"v": JOB_VERSION, "id": new_image_id(), "album": ALBUM, "filename": "poison.jpg",
                "content_type": "image/jpeg", "submitted_at": "2024-01-01T00:00:00.000Z", "size": 0,
                "inline_b64": base64.b64encode(jpeg_bytes("chelsea", scale=0.25)).decode()}
        body.update(changes)
        return json.dumps(body)

    return [
        ("non-JSON", "this is {not JSON"),
        ("JSON not an object", "[1, 2, 3]"),
        ("deep nesting", "[" * 5000 + "]" * 5000),
        ("id a number", job(id=5)),
        ("size a string", job(size="big")),
        ("bad base64", job(inline_b64="%%%not-base64%%%")),
        ("unknown version", job(v=999)),
        ("200 KB file name", job(filename="x" * 200_000)),
        ("200 KB of unknown fields", job(padding="x" * 200_000)),
    ]


# --- configuration and plan --------------------------------------------------------------------

@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run: the load, the faults (how many of each kind) and the bounds it is judged by."""

    seed: int = 12
    images: int = 16
    duration_s: float = 30.0          # uploads and faults are spread over this window
    burst: int = 4                    # uploads arrive in bursts, so workers hold whole batches
    faults: dict = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 1))
    stall_s: tuple[float, float] = (15.0, 30.0)   # an endpoint stall lasts between these
    max_instances: int = 2
    idle_grace_s: float = 8.0
    visibility_timeout_s: int = 10
    upload_clients: int = 4
    drain_timeout_s: float = 150.0    # after the load, for every accepted image to be final
    zero_bound_s: float = 40.0        # the fleet is back to zero within idle grace + this

    def stack_env(self) -> dict[str, str]:
        """The stack's settings for a small, fast-cycling fleet."""
        return {"SIGHTFLEET_MAX_INSTANCES": str(self.max_instances),
                "SIGHTFLEET_IDLE_GRACE_S": str(self.idle_grace_s),
                "SIGHTFLEET_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
                "SIGHTFLEET_CONTROLLER_TICK_S": "1", "SIGHTFLEET_TARGET_BACKLOG_PER_INSTANCE": "4"}

    @property
    def upload_timeout_s(self) -> float:
        """Long enough to ride out a stall: a request held through one is answered, not given up."""
        return self.stall_s[1] + 30.0


def plan_faults(config: ChaosConfig, rng: random.Random) -> list[tuple[float, str]]:
    """Seeded moments in the load window for each fault, in time order."""
    plan = [(rng.uniform(FIRST_FAULT_S, config.duration_s), kind)
            for kind, count in config.faults.items() for _ in range(count)]
    return sorted(plan)


def plan_uploads(config: ChaosConfig, rng: random.Random, photos: list[Photo]) -> list[tuple[float, Photo]]:
    """Seeded moments and photos of every upload, in bursts of config.burst."""
    bursts = -(-config.images // config.burst)
    starts = sorted(rng.uniform(0, config.duration_s * 0.8) for _ in range(bursts))
    return [(starts[n // config.burst], photos[n % len(photos)]) for n in range(config.images)]
