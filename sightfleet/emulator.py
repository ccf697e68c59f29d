"""The local AWS endpoint: moto's WSGI application served by gunicorn, with keep-alive.

`python -m sightfleet.emulator --port 4566` is what `scripts/run` and the tests start.
Why not moto's own `python -m moto.server`: it runs werkzeug's development server, which
closes the connection after every response and starts a thread per request, and moto's
dispatcher works out each request's service by scanning its table of URL patterns (and
listing its own package folder) under one global lock. Served here, connections stay open
and each service's backend is looked up once; a call then costs the emulator a fifth to
two-fifths less CPU and takes 15-33% less time (`benchmarks/emulator.py`). It is still moto: the
same application, the same state, the same /moto-api/. One worker process, because moto
keeps everything in that process's memory.

Repairs to moto's costs, same answers (`_repair_moto`): its SQS receive computed every
attribute of the queue, counting all its messages, for each message it handed out; a read of
n queue attributes built all of them 3n times; every response body, JSON or a photo
included, went through a look-behind regex in search of an XML <RequestId> element.
Receiving 10 jobs from a backlog of 80 took 55-130 ms; it now takes 6. It also parsed each
DynamoDB condition expression anew on every write, listed a handler class's methods with
inspect on every request, drew each request id one character per call, counted the whole queue
three times on each send, compared each backend lookup with every registered service, and worked
out anew, for every member of every item of a JSON response, which names to look it up by: those
are now remembered, drawn at once, or skipped where moto never reads them (`benchmarks/emulator.py`).

With `--state-dir DIR` the endpoint keeps its contents there (sightfleet/local_state.py): a
snapshot every few seconds, and on `POST /_sightfleet/state/save`; `POST /_sightfleet/state/restore`
loads the saved contents into the queues, buckets and tables that exist by then (the stack calls
it right after provisioning). Both answer JSON figures. Every other request is served inside the
state's `RequestGate`, so a snapshot's copy and a restore each happen between requests, never
in the middle of one; a long poll steps out of the gate while it waits for a message.

Only this run's processes and tools get through (sightfleet/endpoint_guard.py): the endpoint takes
the key pair and control token it accepts from its environment (sightfleet/local_access.py) and
refuses to start without them; moto's CORS headers for every origin are off.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import string
import sys
import threading
from collections import OrderedDict
from pathlib import Path

from gunicorn.app.base import BaseApplication
from moto.core import utils as moto_utils
from moto.core.base_backend import BackendDict
from moto.core.serialize import XFormedAttributePicker
from moto.core.responses import BaseResponse
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.moto_api._internal.moto_random import MotoRandom
from moto.core.utils import unix_time
from moto.moto_server import werkzeug_app
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs.models import Queue, SQSBackend

from sightfleet.endpoint_guard import EndpointGuard, allowed_hosts
from sightfleet.local_access import AccessError, LocalAccess
from sightfleet.local_state import EndpointState, RequestGate
from sightfleet.logs import setup_logging

# Enough for every long poll of a full local fleet at once; idle keep-alive connections
# wait in gunicorn's poller and hold no thread.
THREADS = 128
STATE_PATH = "/_sightfleet/state/"
# Seconds between snapshots: what a kill -9 of the endpoint can lose at most.
SAVE_INTERVAL_S = 5.0
# Seconds of silence after which gunicorn's master replaces its worker (see server_options).
WORKER_SILENCE_S = 300
log = logging.getLogger("sightfleet.emulator")


# DynamoDB's item writes. moto applies one as read, change, write with no lock, so two at once could
# both read the same item: two concurrent `ADD hits :one` left the count one short (a lost update).
# DynamoDB applies the writes to an item one at a time; here they are applied one at a time, all items alike.
_ITEM_WRITES = frozenset(f"DynamoDB_20120810.{action}" for action in (
    "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"))


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which of its backends serves each host it is asked about,
    and applying DynamoDB's item writes one at a time."""

    def __init__(self):
        super().__init__(create_backend_app)
        self._backend_by_host: dict = {}
        self._item_writes = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET") not in _ITEM_WRITES:
            return super().__call__(environ, start_response)
        with self._item_writes:
            return super().__call__(environ, start_response)

    def get_backend_for_host(self, host):
        # Called under moto's lock with a few fixed keys (None, "moto_api", a service's host
        # worked out from the request); the answer depends only on that and moto's own tables.
        if host not in self._backend_by_host:
            self._backend_by_host[host] = super().get_backend_for_host(host)
        return self._backend_by_host[host]


class _Persistent:
    """The dispatcher, plus the save and restore routes of the endpoint's state, and its saver thread."""

    def __init__(self, dispatcher, state: EndpointState, save_interval_s: float):
        self._dispatcher = dispatcher
        self.state = state
        self._save_interval_s = save_interval_s
        self._saver_stop = threading.Event()

    def start_saving(self) -> None:
        """Start the periodic snapshots (in the serving process, after gunicorn forked it)."""
        self.state.save_every(self._save_interval_s, self._saver_stop)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(STATE_PATH):
            with self.state.gate.serving():
                return self._dispatcher(environ, start_response)
        action = path[len(STATE_PATH):]
        if environ.get("REQUEST_METHOD") != "POST" or action not in ("save", "restore"):
            return _json_reply(start_response, "404 Not Found", {"error": f"no such state action: {action}"})
        figures = self.state.save() if action == "save" else self.state.restore()
        log.info("state %s: %s", action, figures)
        return _json_reply(start_response, "200 OK", figures)


def _long_polls_step_out(gate: RequestGate) -> None:
    """Make moto's long poll leave the gate while it waits, so a save or restore need not wait for it.

    moto's receive waits on the queue, up to a second at a time, until a message comes or its
    wait time is over; a poll holding the gate meanwhile would hold up snapshots for 20 s.
    """
    def wait_for_messages(queue: Queue, timeout: int) -> None:
        with gate.stepped_out():
            _MOTO_WAIT_FOR_MESSAGES(queue, timeout)
    Queue.wait_for_messages = wait_for_messages


_MOTO_WAIT_FOR_MESSAGES = Queue.wait_for_messages


def _json_reply(start_response, status: str, body: dict):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _repair_moto() -> None:
    """Replace some of moto 5.2.5's functions by ones that give the same results for far less CPU."""
    SQSBackend.is_message_valid_based_on_retention_period = _retention_check
    SQSBackend.get_queue_attributes = _queue_attributes
    BaseResponse._enrich_response = staticmethod(_enriched)
    _remember_pure_functions()
    ConditionExpressionParser.parse = _parsed_once
    MotoRandom.get_random_string = _random_string
    _sends_skip_counting()
    BackendDict._create_account_specific_backend = _account_backend_once
    XFormedAttributePicker.get_possible_keys = _possible_keys_remembered
    XFormedAttributePicker.__call__ = _picked_from_dict
    MotoRandom.get_random_hex = _random_hex


def _account_backend_once(backends: BackendDict, account_id: str) -> None:
    """moto's "make this account's backend and register the service", skipped when the account has one.

    moto did both under its global lock on every backend lookup (several a request), the second by
    comparing with every registered service one by one. Only this method adds an account, and it
    registers the service as it does; a reset empties both the register and every registered service,
    so an account found means a registered service.
    """
    if not dict.__contains__(backends, account_id):
        _MOTO_ACCOUNT_BACKEND(backends, account_id)


_MOTO_ACCOUNT_BACKEND = BackendDict._create_account_specific_backend


class _Remembered:
    """A bounded map, the least recently used entry out first, safe across the endpoint's request threads."""

    def __init__(self, size: int):
        self._entries: OrderedDict = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key, value) -> None:
        with self._lock:
            self._entries[key] = value
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)


_MOTO_POSSIBLE_KEYS = XFormedAttributePicker.get_possible_keys
_POSSIBLE_KEYS = _Remembered(4096)


def _possible_keys_remembered(picker: XFormedAttributePicker, context):
    """The names moto tries, in order, to find a response member in a plain dict, worked out once per member.

    For a dict they depend only on the member's name, its shape and that shape's parent (moto's alias
    rules look at the object's class, which is always dict, and its Meta, which a dict has not); moto
    worked them out for every member of every item of every response (a batch read of 100 results,
    each a map of attribute values, took tens of thousands of rounds).
    """
    if type(context.obj) is not dict:
        return _MOTO_POSSIBLE_KEYS(picker, context)
    return _dict_names(picker, context)[0]


def _dict_names(picker: XFormedAttributePicker, context) -> tuple[tuple[str, ...], bool]:
    """The remembered names of a member of a plain dict, and whether one is a dotted path."""
    shape, parent = context.shape, getattr(context.shape, "parent", None)
    key = (context.key, id(shape), id(parent), id(picker.alias_providers))
    hit = _POSSIBLE_KEYS.get(key)
    if hit is None or hit[0] is not shape or hit[1] is not parent:
        names = tuple(_MOTO_POSSIBLE_KEYS(picker, context))
        hit = (shape, parent, names, any("." in name for name in names))   # the shapes held: ids stay theirs
        _POSSIBLE_KEYS.put(key, hit)
    return hit[2], hit[3]


_MOTO_PICK = XFormedAttributePicker.__call__


def _picked_from_dict(picker: XFormedAttributePicker, context):
    """moto's value of a response member: from a plain dict, the first of its remembered names the dict has
    (what moto's get_value finds for a name without a dot), else None; anything else as moto picks it."""
    obj = context.obj
    if type(obj) is not dict or picker.response_transformers:
        return _MOTO_PICK(picker, context)
    names, dotted = _dict_names(picker, context)
    if dotted:   # a path: moto walks it
        return _MOTO_PICK(picker, context)
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _random_hex(random: MotoRandom, length: int = 8) -> str:
    """moto's random hex string, drawn in one call."""
    return _drawn(random, "0123456789abcdef", length)


def _drawn(random: MotoRandom, pool: str, length: int) -> str:
    return "".join(random.choices(pool, k=length))


_sending = threading.local()
_COUNTS = ("approximate_number_of_messages", "approximate_number_of_messages_delayed",
           "approximate_number_of_messages_not_visible")


def _sends_skip_counting() -> None:
    """moto's send reads one queue attribute (ContentBasedDeduplication) through `Queue.attributes`, which
    also counts every message of the queue three times: a send cost grew with the backlog. While a send
    runs, those counts (which it never reads) answer 0 at once; everywhere else they count as before."""
    for name in _COUNTS:
        counted = getattr(Queue, name).fget
        setattr(Queue, name, property(lambda queue, counted=counted: 0 if getattr(_sending, "active", False)
                                      else counted(queue)))
    SQSBackend.send_message = _send_without_counting


def _send_without_counting(backend: SQSBackend, *args, **kwargs):
    _sending.active = True
    try:
        return _MOTO_SEND(backend, *args, **kwargs)
    finally:
        _sending.active = False


_MOTO_SEND = SQSBackend.send_message


def _remember_pure_functions() -> None:
    """Two pure functions moto calls on every request, remembered: the snake_case of an action or attribute
    name (a regex pass each time, about 2 calls a request) and the method names of a handler class (an
    inspect.getmembers of the whole class on every request)."""
    remembered = {moto_utils.camelcase_to_underscores: functools.lru_cache(4096)(moto_utils.camelcase_to_underscores),
                  moto_utils.method_names_from_class: _method_names}
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.") and module is not None:
            for attribute in ("camelcase_to_underscores", "method_names_from_class"):
                original = getattr(module, attribute, None)
                if original in remembered:
                    setattr(module, attribute, remembered[original])


@functools.lru_cache(256)
def _method_names(handler_class: type) -> tuple[str, ...]:
    return tuple(_MOTO_METHOD_NAMES(handler_class))


_MOTO_METHOD_NAMES = moto_utils.method_names_from_class
_MOTO_PARSE = ConditionExpressionParser.parse
_PARSED = _Remembered(1024)


def _parsed_once(parser: ConditionExpressionParser):
    """moto's syntax tree of a DynamoDB condition or filter expression, parsed once per distinct expression
    with its names and values (the worker's claim and final writes repeat theirs on every image).

    The tree is only read when an item is checked against it; it is parsed from copies of the names and
    values, because moto keeps a request's values in the item it writes (a later ADD to a set changes
    that list in place, and with it a tree built on it). The lists of names and values found go out as
    copies, because moto extends them in place.
    """
    key = json.dumps([parser.condition_expression, parser.expression_attribute_names,
                      parser.expression_attribute_values], sort_keys=True, default=str)
    hit = _PARSED.get(key)
    if hit is None:
        own = ConditionExpressionParser(parser.condition_expression, copy.deepcopy(parser.expression_attribute_names),
                                        copy.deepcopy(parser.expression_attribute_values))
        tree = _MOTO_PARSE(own)   # raises for an invalid expression: nothing is remembered then
        hit = (tree, list(own.expr_attr_names_found), list(own.expr_attr_values_found))
        _PARSED.put(key, hit)
    tree, names, values = hit
    parser.expr_attr_names_found, parser.expr_attr_values_found = list(names), list(values)
    return tree


def _random_string(random: MotoRandom, length: int = 20, include_digits: bool = True, lower_case: bool = False) -> str:
    """moto's random string (a request id on every response), drawn in one call rather than one per character."""
    pool = string.ascii_letters + (string.digits if include_digits else "")
    drawn = _drawn(random, pool, length)
    return drawn.lower() if lower_case else drawn


def _retention_check(backend: SQSBackend, queue_name: str, message) -> bool:
    """moto's check that a message is within its queue's retention period, reading that one attribute.

    moto calls get_queue_attributes here, which builds all of them, among them the approximate
    counts that scan every message: the cost of a receive grew with the backlog.
    """
    retention_s = int(backend.get_queue(queue_name).message_retention_period)
    return retention_s + message.sent_timestamp / 1000 > unix_time()


_MOTO_QUEUE_ATTRIBUTES = SQSBackend.get_queue_attributes


def _queue_attributes(backend: SQSBackend, queue_name: str, attribute_names: list[str]) -> dict:
    """moto's answer, with the queue's attributes (each counting every message) built once.

    moto builds them three times per name asked for; asked for "All" it builds them once, and
    it checks the names either way.
    """
    everything = _MOTO_QUEUE_ATTRIBUTES(backend, queue_name, ["All", *attribute_names])
    if "All" in attribute_names:
        return everything
    return {name: everything[name] for name in attribute_names if everything.get(name) is not None}


_MOTO_ENRICH = BaseResponse._enrich_response


def _enriched(headers: dict, body):
    """moto's request-id header and status, and its request-id regex only where the body has that element.

    The regex (a look-behind tried at every character) cost 5 ms per 100 KB of body; without
    the element it changes nothing, and JSON and binary bodies never have it.
    """
    marker = "<RequestId>" if isinstance(body, str) else b"<RequestId>"
    if isinstance(body, (str, bytes)) and marker not in body:
        return _MOTO_ENRICH(headers, "")[0], body
    return _MOTO_ENRICH(headers, body)


class _Server(BaseApplication):
    """gunicorn with its settings given here rather than read from a command line or file."""

    def __init__(self, app, options: dict, on_load=None):
        self._app = app
        self._options = options
        self._on_load = on_load
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        # Called in the serving process once gunicorn forked it: threads started here live there.
        if self._on_load is not None:
            self._on_load()
        return self._app


def server_options(host: str, port: int) -> dict:
    """gunicorn settings for the emulator: one process, threads, quick to stop.

    The worker process holds all of moto's state, so gunicorn must not replace it lightly: after
    the endpoint was frozen (SIGSTOP of its process group, as the chaos test does, for up to 30 s)
    its master would find the worker silent past gunicorn's default 30 s timeout and kill it.
    """
    return {"bind": f"{host}:{port}", "workers": 1, "worker_class": "gthread", "threads": THREADS,
            "keepalive": 30, "graceful_timeout": 2, "timeout": WORKER_SILENCE_S, "loglevel": "warning"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve moto's AWS emulator on loopback.")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    parser.add_argument("--state-dir", type=Path, help="keep the endpoint's contents in this folder")
    parser.add_argument("--save-interval", type=float, default=SAVE_INTERVAL_S, help="seconds between snapshots")
    args = parser.parse_args(argv)
    setup_logging("aws")
    try:
        access = LocalAccess.from_environ(os.environ)
    except AccessError as exc:
        parser.error(str(exc))
    if access is None:
        parser.error("no access configured: set SIGHTFLEET_LOCAL_AWS_ACCESS_KEY_ID, ..._SECRET_ACCESS_KEY and "
                     "..._CONTROL_TOKEN (scripts/run does; see docs/security-local.md)")
    os.umask(0o077)   # the snapshots hold every photo and password hash: the user's alone
    # moto builds a few self-referencing URLs from this, as its own server does.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # moto answers every origin's CORS preflight unless told not to; read at its import, so set here too.
    os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"
    werkzeug_app.DISABLE_GLOBAL_CORS = True
    _repair_moto()
    app, on_load = _Dispatcher(), None
    if args.state_dir:
        state = EndpointState(args.state_dir)
        _long_polls_step_out(state.gate)
        app = _Persistent(app, state, args.save_interval)
        on_load = app.start_saving
    guarded = EndpointGuard(app, allowed_hosts(args.host, args.port), access)
    _Server(guarded, server_options(args.host, args.port), on_load).run()


if __name__ == "__main__":
    main()
