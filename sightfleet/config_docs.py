"""docs/configuration.md, generated from `Settings`: `python -m sightfleet.config_docs > docs/configuration.md`.

Variable names, types and defaults come from the dataclass itself; each field's meaning is written
here, once. tests/test_docs.py fails when a field has no meaning here or the file is out of date.
"""
from __future__ import annotations

import sys
from dataclasses import MISSING, fields

from sightfleet.config import Settings, env_var_names

# Fields no environment variable sets.
NOT_FROM_ENVIRONMENT: set[str] = set()

# (heading, {field: meaning}), in the order they are printed.
GROUPS: list[tuple[str, dict[str, str]]] = [
    ("Where it runs", {
        "prefix": "prefix of every resource name (queues, buckets, tables, roles) and of the instance tags",
        "region": "AWS region",
        "endpoint_url": "set: talk to that endpoint (`scripts/run` sets it for its children); unset: real AWS",
        "input_bucket": "input bucket name (S3 names are global on AWS); empty: `<prefix>-input`",
        "output_bucket": "output bucket name; empty: `<prefix>-output`",
        "local_aws_port": "port of the local AWS endpoint that `scripts/run` starts",
        "local_aws_state_dir": "where that endpoint keeps its contents between runs; empty: `.run/aws-<port>` "
                               "(`scripts/run --no-persist`: nowhere)",
        "log_level": "logging level of every process (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`)",
        "emulator_patches": "`on`: the local endpoint serves moto with the project's tested repairs "
                            "(`devstack/moto_patches.py`, only on the moto version they were tested on); `off`: "
                            "plain moto",
    }),
    ("Web tier", {
        "port": "web tier port",
        "web_host": "interface the web tier binds (`scripts/deploy` sets `0.0.0.0` behind the load balancer)",
        "web_workers": "gunicorn processes of the web tier (`web_tier/gunicorn.conf.py`)",
        "web_threads": "threads of each gunicorn process (requests that wait for a result each hold one)",
        "max_upload_mb": "upload size limit per image, in MiB",
        "rate_limit": "requests per caller across the whole app in the `limits` notation (`600/minute`, "
                      "`10/second;600/minute`); empty: none. Over it: 429 `RATE_LIMITED` with `Retry-After`",
        "quota_images": "images one owner may hold (deleting gives room back); 0: no quota. Over it: 429 "
                        "`QUOTA_EXCEEDED`",
        "secret_key": "the key that signs session cookies; never put it in the repository (`scripts/run` "
                      "generates one and keeps it in `<state dir>.session-key`, mode 0600)",
        "secret_key_secret": "Secrets Manager secret holding that key (`scripts/deploy`: `<prefix>-session-key`)",
        "open_course_endpoint": "1: the course's `POST /` takes uploads without credentials (owned by the "
                                "built-in `anonymous` owner); 0: it needs an API key",
        "trusted_proxies": "proxies in front of the web tier whose `X-Forwarded-Proto`/`-For` are believed; "
                           "0 trusts none (`scripts/deploy`: 1, the load balancer)",
        "address_rate_limit": "requests per remote address, counted before authentication (refusals, 404s and "
                              "`/healthz` too; docs/security-web.md)",
        "anonymous_rate_limit": "requests per address for callers without credentials (the course endpoint)",
        "signin_concurrency": "password verifications at once per web process (argon2id); one more answers 503 "
                              "`BUSY` with `Retry-After` at once",
        "waits_per_caller": "requests of one caller that may wait for results at once per process "
                            "(`POST /`, `?wait=`); beyond it they answer 202 with the status URL",
        "anonymous_waits": "waits at once for all anonymous callers together, per process",
        "anonymous_quota_images": "images the anonymous owner (the open course endpoint) may add per expiry period",
        "anonymous_expiry_days": "days after which the anonymous owner's photos are deleted",
        "credentials_key": "the key that seals access-key and webhook secrets in the accounts table "
                           "(`sightfleet/secretbox.py`); never in the repository (`scripts/run` keeps one in "
                           "`<state dir>.credentials-key`, mode 0600)",
        "credentials_key_secret": "Secrets Manager secret holding that key (`scripts/deploy`: "
                                  "`<prefix>-credentials-key`, readable by the web role only)",
        "rekognition_wait_s": "how long a Rekognition call waits for the fleet before a retryable "
                              "`ThrottlingException` (below the SDKs' 60 s read timeout; docs/rekognition.md)",
        "webhook_backoff_s": "comma-separated seconds between a failing webhook delivery's attempts; empty: "
                             "10 s up to 8 h, 13 attempts over about 32 hours (docs/webhooks.md)",
        "webhook_visibility_s": "seconds a webhook delivery being attempted stays hidden from other deliverers",
        "webhook_allow_private": "1: webhooks may go to private addresses (never to link-local or metadata "
                                 "ones); 0: public addresses only (and loopback in local mode)",
    }),
    ("The fleet (controller)", {
        "min_instances": "fewest workers the controller keeps",
        "max_instances": "most workers the controller runs (the cap)",
        "controller_tick_s": "controller period, in seconds",
        "target_backlog_per_instance": "queued images one instance should hold",
        "acceptable_latency_s": "latency the target backlog is derived from (with the time per image); "
                                "0: use the target backlog as set",
        "time_per_image_s": "time per image assumed until one is measured; 0: measure only",
        "scale_out_step": "at most this many launches per tick",
        "scale_in_cooldown_s": "seconds between the controller's own scale-in actions",
        "heartbeat_timeout_s": "the controller terminates instances whose worker is silent this long",
        "idle_margin_s": "past the idle grace by this much, the controller retires idle workers itself",
        "warm_pool_size": "stopped (hibernated) workers the stack keeps for a fast resume; 0: none",
        "pool_grace_s": "idle seconds before a worker goes into the pool while it has room (0: the idle grace); "
                        "short, because a resume is cheap and idling is not (`benchmarks/fleet_sim.py`)",
    }),
    ("The worker", {
        "idle_grace_s": "idle seconds before a worker terminates its own instance",
        "worker_heartbeat_s": "seconds between a worker's heartbeats in the fleet table",
        "visibility_timeout_s": "the request queue's visibility timeout (held messages are extended meanwhile)",
        "max_receive_count": "receives before a message goes to the dead-letter queue",
        "stall_timeout_s": "a worker holding jobs that make no progress this long hands them back and exits "
                           "(the watchdog)",
        "receive_wait_s": "longest long poll, in seconds",
        "receive_batch": "messages received per poll (SQS allows at most 10)",
        "min_confidence": "a floor (0-100) on top of each label's own threshold in the vocabulary "
                          "(`sightfleet/data/vocabulary.json`); 0: the thresholds alone decide",
        "max_labels": "most labels per result",
        "classifier": "the ImageNet classifier: `efficientnet_lite0` (default) or `efficientnet_lite3` (more "
                      "accurate, about 1.4x the CPU per image; docs/recognition.md)",
        "label_floor": "labels the thresholds drop are still stored down to this confidence (`weaker_labels`), "
                       "so a read with a lower `MinConfidence` can show them; 100: none",
        "stored_max_labels": "most labels stored per result, shown or weaker",
        "features": "what a photo is asked for when neither its upload nor its account names features: a "
                    "comma-separated list of `labels`, `text`, `faces`, `properties`, `moderation` "
                    "(docs/recognition.md gives each one's CPU per image)",
        "moderation_threshold": "the open_nsfw score, in percent, from which moderation flags a photo (and, in `hold` "
                                "mode, holds it); docs/recognition.md gives its false-positive rate on ordinary photos",
        "moderation": "`off`, `flag` (every photo's ModerationLabels recorded) or `hold` (as flag, and a flagged "
                      "photo stays out of galleries and search until an admin releases it on `/ops`)",
        "thumbnail_size": "thumbnail bounding box, in pixels",
        "max_pixels": "decompression-bomb guard: larger images fail `IMAGE_TOO_LARGE`",
        "image_timeout_s": "time bound per image (`TIMEOUT`)",
        "torch_threads": "threads torch uses in a worker (the native runtime)",
        "inference": "runtime of the worker's models: `openvino` (falls back to `native` where it cannot "
                     "load, and logs it once) or `native` (OpenCV DNN + TorchScript)",
        "model_cache_dir": "where the converted models are cached, keyed by package versions; empty: "
                           "`~/.cache/sightfleet/models` (the AWS image bakes them into `/var/lib/sightfleet/models`)",
        "instance_id": "a worker's instance id when not on EC2 (the local EC2 host sets it); unset: from "
                       "instance metadata",
    }),
    ("Launching workers on AWS", {
        "image_id": "image the controller launches workers from",
        "instance_type": "workers' instance type",
        "instance_profile": "workers' instance profile",
        "launch_template": "launch template the controller launches from (`scripts/deploy`: `<prefix>-worker`)",
        "worker_command": "the command an instance runs as its worker",
        "code_bundle": "`s3://` URI of the code an instance installs at boot when its image has none "
                       "(set by `scripts/deploy`)",
        "artefacts_bucket": "bucket `scripts/deploy` uploads the code bundle to; empty: `<prefix>-artefacts`",
    }),
]

# Variables read outside Settings, by the process they concern: (variable, default, meaning).
OTHER_VARIABLES = [
    ("SIGHTFLEET_API_KEY", "", "the workload generator's API key (its `--api-key`)"),
]

HEADER = """# Configuration

<!-- Generated by `python -m sightfleet.config_docs > docs/configuration.md` from sightfleet/config.py;
     tests/test_docs.py fails when it is out of date. Edit the meanings in sightfleet/config_docs.py. -->

Every setting is read once, at start-up, from the environment into `sightfleet.config.Settings`
(`Settings.from_env`); a malformed value stops the process with a message naming the variable.
`scripts/run` sets a few defaults of its own for a small machine (a cap of 3, a warm pool of 3,
shorter graces): see [the local stack](local-stack.md).
"""


def _default(name: str) -> str:
    spec = next(f for f in fields(Settings) if f.name == name)
    value = spec.default if spec.default is not MISSING else None
    return "" if value in (None, "") else f"`{value}`"


def _type(name: str) -> str:
    spec = next(f for f in fields(Settings) if f.name == name)
    return str(spec.type).replace(" | None", "")


def render() -> str:
    """The whole of docs/configuration.md."""
    lines = [HEADER]
    for heading, meanings in GROUPS:
        lines += [f"## {heading}", "", "| variable | type | default | meaning |", "|---|---|---|---|"]
        for name, meaning in meanings.items():
            variables = ", ".join(f"`{var}`" for var in env_var_names(name))
            lines.append(f"| {variables} | {_type(name)} | {_default(name)} | {meaning} |")
        lines.append("")
    lines += ["## Read outside Settings", "", "| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{var}` | {f'`{default}`' if default else ''} | {meaning} |" for var, default, meaning in OTHER_VARIABLES]
    return "\n".join(lines) + "\n"


def undocumented() -> list[str]:
    """Settings fields with no meaning written here, meanings of fields that do not exist, and variables
    listed as read outside Settings that Settings now reads."""
    described = [name for _, meanings in GROUPS for name in meanings]
    settable = [f.name for f in fields(Settings) if f.name not in NOT_FROM_ENVIRONMENT]
    in_settings = {var for name in settable for var in env_var_names(name)}
    twice = [var for var, _, _ in OTHER_VARIABLES if var in in_settings]
    return sorted(set(settable) ^ set(described)) + twice


if __name__ == "__main__":
    missing = undocumented()
    if missing:
        sys.exit(f"no meaning written in sightfleet/config_docs.py for: {', '.join(missing)}")
    sys.stdout.write(render())
