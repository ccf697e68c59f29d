"""boto3 clients built from Settings, plus the ClientError translation shared by all modules."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sightfleet.config import Settings
from sightfleet.errors import ConditionFailed, NotFound, Unavailable

_NOT_FOUND_CODES = {
    "NoSuchKey", "NoSuchBucket", "404", "NotFound", "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "InvalidInstanceID.NotFound",
}
_CONDITION_CODES = {"ConditionalCheckFailedException", "PreconditionFailed"}
_lock = threading.Lock()
_sessions: dict[str, boto3.session.Session] = {}


def client(settings: Settings, service: str, **config):
    """A boto3 client for one service; endpoint and region come from settings."""
    # Clients are thread-safe but sessions are not: create clients under one lock.
    retries = config.pop("retries", {"max_attempts": 3, "mode": "standard"})
    with _lock:
        return _session(settings).client(
            service,
            endpoint_url=settings.endpoint_url,
            config=Config(retries=retries, **config),
        )


def _session(settings: Settings) -> boto3.session.Session:
    session = _sessions.get(settings.region)
    if session is None:
        session = _sessions[settings.region] = boto3.session.Session(region_name=settings.region)
    return session


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError."""
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn botocore errors raised inside the block into the project's errors."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code in _NOT_FOUND_CODES:
            raise NotFound(f"{what}: {code}") from exc
        if code in _CONDITION_CODES:
            raise ConditionFailed(f"{what}: {code}") from exc
        raise Unavailable(f"{what}: {code or exc}") from exc
    except BotoCoreError as exc:
        raise Unavailable(f"{what}: {exc}") from exc


def resource(settings: Settings, service: str):
    """A boto3 resource (used for DynamoDB's value marshalling)."""
    with _lock:
        return _session(settings).resource(
            service, endpoint_url=settings.endpoint_url,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )
