"""Typed configuration read once from environment variables at the edge."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

from sightfleet.features import MODERATION_MODES, parse_features
from sightfleet.webhooks import BACKOFF_S

REPO_ROOT = Path(__file__).resolve().parents[1]
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")
# The classifiers the worker can run; the native runtime runs the first only (docs/recognition.md compares them).
CLASSIFIER_MODELS = ("efficientnet_lite0", "efficientnet_lite3")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A configuration value is missing or malformed."""


@dataclass(frozen=True)
class ResourceNames:
    """Every AWS resource name, derived from one prefix."""

    prefix: str
    input_bucket: str
    output_bucket: str
    # Where scripts/deploy puts the code bundle instances install at boot (kept outside the stack).
    artefacts_bucket: str = ""

    @property
    def stack_name(self) -> str:
        """The CloudFormation stack that scripts/deploy makes for this prefix."""
        return self.prefix

    def role_name(self, role: str) -> str:
        """The IAM role, instance profile and launch template of one role (worker, web, controller)."""
        return f"{self.prefix}-{role}"

    @property
    def request_queue(self) -> str:
        return f"{self.prefix}-requests"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-requests-dlq"

    @property
    def response_queue(self) -> str:
        return f"{self.prefix}-responses"

    @property
    def results_table(self) -> str:
        return f"{self.prefix}-results"

    @property
    def fleet_table(self) -> str:
        return f"{self.prefix}-fleet"

    # Accounts and sign-in: the accounts table, and the session key scripts/deploy generates.
    @property
    def accounts_table(self) -> str:
        return f"{self.prefix}-accounts"

    @property
    def session_secret(self) -> str:
        """The Secrets Manager secret holding a deployed stack's session-signing key."""
        return f"{self.prefix}-session-key"

    @property
    def webhook_queue(self) -> str:
        """Webhook deliveries waiting for their (next) attempt (web_tier/webhooks/deliver.py)."""
        return f"{self.prefix}-webhooks"

    @property
    def credentials_secret(self) -> str:
        """The Secrets Manager secret holding a deployed stack's credentials key (sightfleet/secretbox.py)."""
        return f"{self.prefix}-credentials-key"

    @property
    def limits_table(self) -> str:
        """Rate-limit windows and image quotas."""
        return f"{self.prefix}-limits"

    @property
    def labels_table(self) -> str:
        """The label index and each owner's label counts (sightfleet/aws/labels.py)."""
        return f"{self.prefix}-labels"

    @property
    def metrics_namespace(self) -> str:
        return f"Sightfleet/{self.prefix}"

    @property
    def stack_tag(self) -> str:
        return "sightfleet:stack"

    @property
    def role_tag(self) -> str:
        return "sightfleet:role"


@dataclass(frozen=True)
class Settings:
    """Everything the tiers need to know, with documented defaults."""

    prefix: str = "sightfleet"
    region: str = "us-east-1"
    endpoint_url: str | None = None
    input_bucket: str = ""
    output_bucket: str = ""
    port: int = 8000
    # Interface gunicorn binds: loopback locally; scripts/deploy sets 0.0.0.0 behind the load balancer.
    web_host: str = "127.0.0.1"
    web_workers: int = 2
    web_threads: int = 96
    log_level: str = "INFO"
    local_aws_port: int = 4566
    # Where `scripts/run`'s local AWS endpoint keeps its contents between runs ("": .run/aws-<port>).
    local_aws_state_dir: str = ""
    # "off": the local endpoint serves plain moto, without its faster replacements (devstack/moto_patches.py).
    emulator_patches: str = "on"
    max_upload_mb: float = 10.0
    min_instances: int = 0
    max_instances: int = 19
    idle_grace_s: float = 60.0
    controller_tick_s: float = 2.0
    target_backlog_per_instance: int = 10
    scale_out_step: int = 5
    scale_in_cooldown_s: float = 60.0
    heartbeat_timeout_s: float = 120.0
    worker_heartbeat_s: float = 10.0
    visibility_timeout_s: int = 60
    # The worker's watchdog: held jobs without progress this long mean a hung pipeline (see app_tier/heartbeat.py).
    stall_timeout_s: float = 120.0
    max_receive_count: int = 3
    receive_wait_s: int = 20
    receive_batch: int = 10
    # Percent: a floor under every label's own threshold (sightfleet/data/vocabulary.json); 0: the vocabulary decides.
    min_confidence: float = 0.0
    max_labels: int = 10
    # What the worker stores beside them: weaker labels down to label_floor percent (whatever a label's own
    # threshold), at most stored_max_labels, for reads that lower MinConfidence (docs/labels.md; 100: none).
    label_floor: float = 20.0
    stored_max_labels: int = 25
    # What a photo is asked for when neither its upload nor its account names features (sightfleet/features.py):
    # a comma-separated list of labels, text, faces, properties, moderation.
    features: str = "labels,faces,properties"
    # Moderation of every photo: off, flag (record ModerationLabels) or hold (flagged photos stay out of
    # galleries and search until an admin releases them on /ops).
    moderation: str = "flag"
    # The open_nsfw score (percent) from which a photo is flagged (app_tier/pipeline/moderation.py, docs/recognition.md).
    moderation_threshold: float = 80.0
    thumbnail_size: int = 250
    max_pixels: int = 50_000_000
    image_timeout_s: float = 30.0
    torch_threads: int = 1
    # Runtime of the worker's models: "openvino" (falls back to "native" where it cannot load) or "native".
    inference: str = "openvino"
    # The worker's ImageNet classifier (docs/recognition.md says why the default): one of CLASSIFIER_MODELS.
    classifier: str = "efficientnet_lite0"
    # Where the OpenVINO IR, its compiled form and the native runtime's frozen
    # TorchScript graph are cached ("": ~/.cache/sightfleet/models; the AWS image bakes them in
    # /var/lib/sightfleet/models, which the worker's ~/.cache/sightfleet/models links to).
    model_cache_dir: str = ""
    instance_id: str | None = None
    image_id: str = "ami-sightfleet-worker"
    instance_type: str = "t3.large"
    instance_profile: str | None = None
    launch_template: str | None = None
    # s3://bucket/key of the code an instance installs at boot when its image has none (scripts/deploy).
    code_bundle: str = ""
    artefacts_bucket: str = ""
    worker_command: str = "python -m app_tier"
    # Controller: latency-derived target backlog (0 = off, use target_backlog_per_instance),
    # a configured time per image when none is measured yet (0 = measure only), and the
    # margin past idle_grace_s after which the controller retires idle workers itself.
    acceptable_latency_s: float = 0.0
    time_per_image_s: float = 0.0
    idle_margin_s: float = 30.0
    # Warm pool: how many stopped (hibernated) workers the stack keeps, and the idle seconds after
    # which a worker goes into the pool when it has room (0: idle_grace_s); see docs/fleet.md.
    warm_pool_size: int = 0
    pool_grace_s: float = 2.0   # a short grace into the pool (benchmarks/fleet_sim.py)
    # Accounts and sign-in (web_tier/auth.py): the key that signs session cookies (empty:
    # scripts/run keeps one in its state dir; a deployed stack reads it from secret_key_secret), whether
    # the course's `POST /` takes uploads without credentials (1) or not (0), and how many proxies in
    # front of the web tier set X-Forwarded-Proto/-For (0: trust none; 1 behind the load balancer).
    secret_key: str = field(default="", repr=False)
    secret_key_secret: str = ""
    # The key that seals access-key secrets in the accounts table (sightfleet/secretbox.py): set, or kept
    # by scripts/run in its state dir; a deployed stack reads it from credentials_key_secret.
    credentials_key: str = field(default="", repr=False)
    credentials_key_secret: str = ""
    # Rekognition's JSON protocol at the web tier's base URL (web_tier/rekognition): how long a call waits
    # for the fleet before answering a retryable ThrottlingException (below the SDKs' 60 s read timeout).
    rekognition_wait_s: float = 45.0
    # Webhooks (web_tier/webhooks): the delays between a failing delivery's attempts in seconds ("": about
    # 32 hours' worth, sightfleet/webhooks.py BACKOFF_S), how long a delivery being attempted stays
    # invisible to other deliverers, and whether receivers on private networks may be called (1) or not (0;
    # loopback is allowed locally; link-local, where the metadata service answers, never).
    webhook_backoff_s: str = ""
    webhook_visibility_s: int = 30
    webhook_allow_private: int = 0
    open_course_endpoint: int = 1
    trusted_proxies: int = 0
    # Limits (web_tier/limits.py): requests per API key, owner or anonymous address, in the
    # `limits` notation ("600/minute", "10/second;600/minute"; "" = none), and how many images one
    # owner may hold (0 = no quota).
    rate_limit: str = "600/minute"
    quota_images: int = 0
    # The web tier's bounds before work (docs/security-web.md): every request per address, before
    # authentication; anonymous callers' lower rate; password verifications at once per process; waits
    # at once per caller and for all anonymous callers per process; the anonymous owner's images per
    # expiry period and the days after which its photos expire.
    address_rate_limit: str = "1200/minute"
    anonymous_rate_limit: str = "300/minute"
    signin_concurrency: int = 2
    waits_per_caller: int = 80
    anonymous_waits: int = 80
    anonymous_quota_images: int = 1000
    anonymous_expiry_days: int = 7

    @property
    def names(self) -> ResourceNames:
        return ResourceNames(
            prefix=self.prefix,
            input_bucket=self.input_bucket or f"{self.prefix}-input",
            output_bucket=self.output_bucket or f"{self.prefix}-output",
            artefacts_bucket=self.artefacts_bucket or f"{self.prefix}-artefacts",
        )

    @property
    def default_features(self) -> tuple[str, ...]:
        """The stack's default features (moderation is added by the mode, see features.effective_features)."""
        return parse_features(self.features)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def webhook_backoff(self) -> tuple[int, ...]:
        """The delays between a failing delivery's attempts."""
        return tuple(int(part) for part in self.webhook_backoff_s.split(",")) if self.webhook_backoff_s else BACKOFF_S

    @property
    def pool_idle_s(self) -> float:
        """Idle seconds after which a worker goes into the pool when the pool has room."""
        if self.warm_pool_size == 0:
            return self.idle_grace_s
        return min(self.pool_grace_s or self.idle_grace_s, self.idle_grace_s)

    @property
    def local_state_path(self) -> Path:
        """Where scripts/run's endpoint keeps its contents: SIGHTFLEET_LOCAL_AWS_STATE_DIR, else .run/aws-<port>."""
        if self.local_aws_state_dir:
            return Path(self.local_aws_state_dir).resolve()
        return REPO_ROOT / ".run" / f"aws-{self.local_aws_port}"

    @property
    def is_local(self) -> bool:
        """True when talking to a local emulator rather than real AWS."""
        return bool(self.endpoint_url)

    def with_changes(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from SIGHTFLEET_* and the usual AWS variables."""
        env = os.environ if environ is None else environ
        values = {}
        for spec in fields(cls):
            raw = _lookup(env, spec.name)
            if raw is None or raw == "":
                continue
            values[spec.name] = _coerce(spec.name, str(spec.type), raw)
        settings = cls(**values)
        _validate(settings)
        return settings


# Variables that keep names people already know instead of the SIGHTFLEET_ form.
_ALIASES = {
    "endpoint_url": ("AWS_ENDPOINT_URL",),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "port": ("PORT",),
}


def env_var_names(name: str) -> tuple[str, ...]:
    """The environment variables that set one field, first match wins."""
    return (f"SIGHTFLEET_{name.upper()}",) + _ALIASES.get(name, ())


def _lookup(env: Mapping[str, str], name: str) -> str | None:
    for var in env_var_names(name):
        if var in env:
            return env[var]
    return None


def _coerce(name: str, type_name: str, raw: str):
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        return raw
    except ValueError as exc:
        raise ConfigError(f"{env_var_names(name)[0]}={raw!r} is not a valid {type_name}") from exc


def _validate(settings: Settings) -> None:
    if not _PREFIX_RE.match(settings.prefix):
        raise ConfigError(
            "SIGHTFLEET_PREFIX must be 3-40 lower-case letters, digits or dashes "
            f"(it names buckets and queues), got {settings.prefix!r}"
        )
    if not 0 <= settings.min_instances <= settings.max_instances:
        raise ConfigError("need 0 <= SIGHTFLEET_MIN_INSTANCES <= SIGHTFLEET_MAX_INSTANCES")
    if settings.max_upload_mb <= 0:
        raise ConfigError("SIGHTFLEET_MAX_UPLOAD_MB must be positive")
    if settings.inference not in ("openvino", "native"):
        raise ConfigError(f"SIGHTFLEET_INFERENCE must be openvino or native, got {settings.inference!r}")
    if settings.classifier not in CLASSIFIER_MODELS:
        raise ConfigError(f"SIGHTFLEET_CLASSIFIER must be one of {', '.join(CLASSIFIER_MODELS)}, "
                          f"got {settings.classifier!r}")
    if settings.warm_pool_size < 0 or settings.pool_grace_s < 0:
        raise ConfigError("SIGHTFLEET_WARM_POOL_SIZE and SIGHTFLEET_POOL_GRACE_S must not be negative")
    if min(settings.signin_concurrency, settings.waits_per_caller, settings.anonymous_waits,
           settings.anonymous_expiry_days) < 1 or settings.anonymous_quota_images < 0:
        raise ConfigError("SIGHTFLEET_SIGNIN_CONCURRENCY, _WAITS_PER_CALLER, _ANONYMOUS_WAITS and "
                          "_ANONYMOUS_EXPIRY_DAYS must be at least 1, SIGHTFLEET_ANONYMOUS_QUOTA_IMAGES at least 0")
    if settings.quota_images < 0:
        raise ConfigError("SIGHTFLEET_QUOTA_IMAGES must not be negative (0: no quota)")
    if settings.emulator_patches not in ("on", "off"):
        raise ConfigError(f"SIGHTFLEET_EMULATOR_PATCHES must be on or off, got {settings.emulator_patches!r}")
    if settings.webhook_backoff_s and not re.fullmatch(r"\d+(,\d+)*", settings.webhook_backoff_s):
        raise ConfigError("SIGHTFLEET_WEBHOOK_BACKOFF_S is a comma-separated list of whole seconds")
    if not 0 <= settings.label_floor <= 100:
        raise ConfigError("SIGHTFLEET_LABEL_FLOOR is a percentage, 0-100")
    if settings.stored_max_labels < settings.max_labels:
        raise ConfigError("SIGHTFLEET_STORED_MAX_LABELS must be at least SIGHTFLEET_MAX_LABELS")
    try:
        parse_features(settings.features)
    except ValueError as exc:
        raise ConfigError(f"SIGHTFLEET_FEATURES: {exc}") from exc
    if not 0 <= settings.moderation_threshold <= 100:
        raise ConfigError("SIGHTFLEET_MODERATION_THRESHOLD is a percentage, 0-100")
    if settings.moderation not in MODERATION_MODES:
        raise ConfigError(f"SIGHTFLEET_MODERATION must be one of {', '.join(MODERATION_MODES)}, "
                          f"got {settings.moderation!r}")
    if settings.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"SIGHTFLEET_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {settings.log_level!r}")
    if min(settings.web_workers, settings.web_threads) < 1:
        raise ConfigError("SIGHTFLEET_WEB_WORKERS and SIGHTFLEET_WEB_THREADS must be at least 1")
    if settings.target_backlog_per_instance < 1:
        raise ConfigError("SIGHTFLEET_TARGET_BACKLOG_PER_INSTANCE must be at least 1")


def settings_or_exit(log, environ: Mapping[str, str] | None = None) -> Settings:
    """For entry points: the settings, or log why they are wrong and exit with status 2."""
    try:
        return Settings.from_env(environ)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        raise SystemExit(2) from exc
