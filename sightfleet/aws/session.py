"""boto3 clients built from Settings, plus the ClientError translation shared by all modules.

Every client and resource gets the same bounded behaviour, set here and nowhere else:
CONNECT_TIMEOUT_S to open a connection, READ_TIMEOUT_S for each wait on the socket, and
ATTEMPTS tries in botocore's standard retry mode (throttling, 5xx and connection errors,
timeouts included, are retried with jittered exponential backoff). SQS long polls keep the
server waiting up to LONG_POLL_MAX_WAIT_S before it answers, so they go through their own
client (`client(..., long_poll=True)`) whose read timeout is that wait plus READ_TIMEOUT_S.

Worst case of one call (`worst_case_s`): attempts x (connect + read) + the backoffs between
attempts, each at most min(2 ** (i - 1), 20) s plus up to 5 s more when a throttled reply asks
for it (x-amz-retry-after). That is CALL_WORST_CASE_S (52 s) for an ordinary call and
LONG_POLL_WORST_CASE_S (72 s) for a long poll. Not covered: DNS resolution, and a server that
trickles its answer a byte at a time (the read timeout bounds each wait, not the whole reply).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from sightfleet.config import Settings
from sightfleet.errors import ConditionFailed, Invalid, NoSuchObject, NotFound, Unavailable

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
ATTEMPTS = 3
RETRY_MODE = "standard"
# SQS's longest WaitTimeSeconds. A long poll is retried once only: its caller polls again anyway,
# and one retry still covers a keep-alive connection the server closed meanwhile.
LONG_POLL_MAX_WAIT_S = 20
LONG_POLL_ATTEMPTS = 2
# botocore's standard mode: backoff base 1 s (throttling), cap 20 s, plus at most 5 s asked by the server.
_BACKOFF_CAP_S = 20
_RETRY_AFTER_MAX_S = 5

# SQS's query-protocol codes carry this prefix; the tables below name codes without it.
_SQS_PREFIX = "AWS.SimpleQueueService."
_NOT_FOUND_CODES = {
    "NoSuchKey", "NoSuchBucket", "404", "NotFound", "ResourceNotFoundException", "NoSuchEntity",
    "NonExistentQueue", "QueueDoesNotExist", "InvalidInstanceID.NotFound",
    "InvalidLaunchTemplateName.NotFoundException", "InvalidLaunchTemplateId.NotFound", "InvalidAMIID.NotFound",
}
_CONDITION_CODES = {"ConditionalCheckFailedException", "PreconditionFailed"}
# Requests that can never succeed as made, by the codes each service really sends (botocore
# shows moto's and AWS's JSON/CBOR answers with the query-protocol code where there is one).
_INVALID_CODES = {
    # DynamoDB
    "ValidationException", "SerializationException", "ItemCollectionSizeLimitExceededException",
    # SQS; a receipt handle that is malformed, expired or no longer in flight cannot be used again
    "InvalidParameterValue", "MissingParameter", "InvalidAttributeName", "InvalidAttributeValue",
    "InvalidMessageContents", "InvalidBatchEntryId", "BatchEntryIdsNotDistinct", "EmptyBatchRequest",
    "TooManyEntriesInBatchRequest", "BatchRequestTooLong", "UnsupportedOperation", "InvalidAddress",
    "ReceiptHandleIsInvalid", "MessageNotInflight",
    # S3
    "InvalidArgument", "MalformedXML", "EntityTooLarge", "InvalidBucketName", "KeyTooLongError",
    "MetadataTooLarge", "InvalidRequest", "InvalidDigest",
    # EC2
    "InvalidParameterCombination", "InvalidParameter", "UnknownParameter", "InvalidAMIID.Malformed",
    "InvalidInstanceID.Malformed",
    # CloudWatch (the query code, and the CBOR shape name where they differ)
    "ValidationError", "InvalidParameterValueException", "InvalidParameterCombinationException",
    "MissingRequiredParameterException", "InvalidNextToken", "InvalidFormat", "InvalidFormatFault",
}
_lock = threading.Lock()
_sessions: dict[str, boto3.session.Session] = {}


def worst_case_s(attempts: int = ATTEMPTS, read_timeout_s: float = READ_TIMEOUT_S) -> float:
    """The longest one call can take: every attempt timing out, and the longest backoff between them."""
    backoffs = sum(min(2 ** (retry - 1), _BACKOFF_CAP_S) + _RETRY_AFTER_MAX_S for retry in range(1, attempts))
    return attempts * (CONNECT_TIMEOUT_S + read_timeout_s) + backoffs


CALL_WORST_CASE_S = worst_case_s()
# For calls made in front of every request (the web tier's rate counters): an answer within about two
# seconds or an error at once, since their callers carry on without one (they fail open).
FAIL_FAST = Config(connect_timeout=1.0, read_timeout=1.0, retries={"total_max_attempts": 1, "mode": RETRY_MODE})
LONG_POLL_WORST_CASE_S = worst_case_s(LONG_POLL_ATTEMPTS, LONG_POLL_MAX_WAIT_S + READ_TIMEOUT_S)


def _config(long_poll: bool = False, **extra) -> Config:
    """The one place timeouts and retries are chosen, for every client and resource."""
    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=LONG_POLL_MAX_WAIT_S + READ_TIMEOUT_S if long_poll else READ_TIMEOUT_S,
        retries={"total_max_attempts": LONG_POLL_ATTEMPTS if long_poll else ATTEMPTS, "mode": RETRY_MODE},
        **extra,
    )


def client(settings: Settings, service: str, long_poll: bool = False, **config):
    """A boto3 client for one service; endpoint and region come from settings.

    long_poll: for SQS ReceiveMessage only, whose server may wait LONG_POLL_MAX_WAIT_S before answering.
    """
    # Clients are thread-safe but sessions are not: create clients under one lock.
    with _lock:
        return _session(settings).client(
            service, endpoint_url=settings.endpoint_url, config=_config(long_poll, **config))


def resource(settings: Settings, service: str, fail_fast: bool = False):
    """A boto3 resource (used for DynamoDB's value marshalling); fail_fast: one short attempt (FAIL_FAST)."""
    config = _config().merge(FAIL_FAST) if fail_fast else _config()
    with _lock:
        return _session(settings).resource(service, endpoint_url=settings.endpoint_url, config=config)


def _session(settings: Settings) -> boto3.session.Session:
    session = _sessions.get(settings.region)
    if session is None:
        session = _sessions[settings.region] = boto3.session.Session(region_name=settings.region)
    return session


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn botocore errors raised inside the block into the project's errors.

    NotFound, ConditionFailed, Invalid (can never succeed as made: do not retry), and
    Unavailable for everything else: throttling, 5xx, timeouts and connection errors.
    """
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        bare = code.removeprefix(_SQS_PREFIX)
        if bare == "NoSuchKey":
            raise NoSuchObject(f"{what}: {code}") from exc
        if bare in _NOT_FOUND_CODES:
            raise NotFound(f"{what}: {code}") from exc
        if bare in _CONDITION_CODES:
            raise ConditionFailed(f"{what}: {code}") from exc
        if bare in _INVALID_CODES:
            raise Invalid(f"{what}: {code}: {_message(exc)}") from exc
        raise Unavailable(f"{what}: {code or exc}") from exc
    except ParamValidationError as exc:
        raise Invalid(f"{what}: {exc}") from exc
    except BotoCoreError as exc:
        raise Unavailable(f"{what}: {exc}") from exc
