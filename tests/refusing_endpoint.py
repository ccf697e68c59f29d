"""`python tests/refusing_endpoint.py PORT CODE`: moto on PORT, refusing StopInstances with Hibernate=true as AWS does.

AWS answers a hibernation it cannot do (not enabled at launch, unencrypted root volume, an
unsupported type) with an error CODE; moto accepts every one. This endpoint answers CODE instead,
and passes every other call to moto, so the EC2 module's plain-stop fallback is tested through
boto3 and a real endpoint.
"""
from __future__ import annotations

import io
import sys
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

ERROR = ('<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
         '<Message>hibernation is not possible for this instance (test endpoint)</Message></Error></Errors>'
         '<RequestID>refused</RequestID></Response>')


class RefuseHibernation:
    """WSGI middleware: StopInstances with Hibernate=true gets the error `code`; the rest goes to moto."""

    def __init__(self, app, code: str):
        self._app, self._code = app, code

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)   # moto reads it again
        form = parse_qs(body.decode("utf-8", "replace"))
        if form.get("Action") == ["StopInstances"] and form.get("Hibernate") == ["true"]:
            start_response("400 Bad Request", [("Content-Type", "text/xml")])
            return [ERROR.format(code=self._code).encode()]
        return self._app(environ, start_response)


if __name__ == "__main__":
    port, code = int(sys.argv[1]), sys.argv[2]
    run_simple("127.0.0.1", port, RefuseHibernation(DomainDispatcherApplication(create_backend_app), code),
               threaded=True)
