"""This test run's own access to the local endpoints it starts: a key pair and control token, drawn at import.

Every endpoint and stack the harness starts accepts these and nothing else (devstack/endpoint_guard.py),
so the test process speaks to all of them, and never with credentials of the caller's own.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devstack.stack import endpoint_env
from sightfleet.local_access import RUN_DIR, LocalAccess, lock_file, private_dir, write_env_file

TEST_ACCESS = LocalAccess.generate()
AWS_TEST_ENV = {**TEST_ACCESS.client_env(), "AWS_DEFAULT_REGION": "us-east-1"}


def use_test_access() -> None:
    """Give this process (and every endpoint or stack it starts) the run's test key pair and control token.

    It replaces credentials of the caller's own: the harness never sends real ones to a local endpoint.
    """
    os.environ.update({**AWS_TEST_ENV, **endpoint_env(TEST_ACCESS)})
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


def control_headers() -> dict[str, str]:
    """What a control request (/_sightfleet/state/..., /moto-api/...) to a harness endpoint carries."""
    return TEST_ACCESS.control_headers()


def sigv4_headers(url: str, method: str, body: bytes, service: str, headers: dict,
                  access: LocalAccess = TEST_ACCESS) -> dict[str, str]:
    """The headers of a request signed as boto3 signs it (botocore's SigV4), by default with the run's test pair."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(access.access_key_id, access.secret_access_key), service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def environ_for(method: str, url: str, headers: dict, body: bytes = b"") -> dict:
    """A WSGI environ as gunicorn builds it for this request."""
    parts = urlsplit(url)
    environ = {"REQUEST_METHOD": method, "PATH_INFO": unquote(parts.path), "QUERY_STRING": parts.query,
               "RAW_URI": parts.path + (f"?{parts.query}" if parts.query else ""), "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": parts.netloc}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return environ


@contextlib.contextmanager
def running_stack_env_file(path: Path, endpoint_url: str):
    """A local-aws.env for endpoint_url with the run's test pair, whose stack counts as running meanwhile
    (its lock on the endpoint's port is held, as `scripts/run` holds it)."""
    write_env_file(path, endpoint_url, "us-east-1", TEST_ACCESS)
    private_dir(RUN_DIR)
    lock = lock_file(urlsplit(endpoint_url).port)
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            lock.unlink()
