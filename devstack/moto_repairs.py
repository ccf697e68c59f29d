"""moto 5.2.5's functions as the local endpoint replaces them: the same answers for far less CPU.

devstack/moto_patches.py lists where each goes, why, and the test that proves the same answers, and puts
them in place only on the moto versions they were tested against. Each original is kept here (`_MOTO_...`)
when this module is imported, before anything is replaced, so that a replacement can call it.
"""
from __future__ import annotations

import copy
import functools
import json
import string
import threading
from collections import OrderedDict

from moto.cloudformation.exceptions import ValidationError
from moto.core import utils as moto_utils
from moto.core.base_backend import BackendDict
from moto.core.responses import BaseResponse
from moto.core.serialize import XFormedAttributePicker
from moto.core.utils import unix_time
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.moto_api._internal.moto_random import MotoRandom
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs.models import Queue, SQSBackend


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


def _zero_while_sending(name: str) -> property:
    """One of a queue's message counts, answering 0 at once while a send runs.

    moto's send reads one queue attribute (ContentBasedDeduplication) through `Queue.attributes`, which
    also counts every message of the queue three times: a send cost grew with the backlog. The send never
    reads those counts; everywhere else they count as before."""
    counted = getattr(Queue, name).fget
    return property(lambda queue: 0 if getattr(_sending, "active", False) else counted(queue))


_VISIBLE_COUNT = _zero_while_sending("approximate_number_of_messages")
_DELAYED_COUNT = _zero_while_sending("approximate_number_of_messages_delayed")
_NOT_VISIBLE_COUNT = _zero_while_sending("approximate_number_of_messages_not_visible")


def _send_without_counting(backend: SQSBackend, *args, **kwargs):
    _sending.active = True
    try:
        return _MOTO_SEND(backend, *args, **kwargs)
    finally:
        _sending.active = False


_MOTO_SEND = SQSBackend.send_message


# The snake_case of an action or attribute name: a regex pass each time, about 2 calls a request.
_camelcase_to_underscores = functools.lru_cache(4096)(moto_utils.camelcase_to_underscores)


@functools.lru_cache(256)
def _method_names(handler_class: type) -> tuple[str, ...]:
    """The method names of a handler class: moto ran inspect.getmembers over the whole class on every request."""
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

    The regex (a look-behind tried at every character) cost 0.18 ms per 100 KB of text body
    (benchmarks/moto_patches.py); without the element it changes nothing, and JSON and binary bodies never have it.
    """
    marker = "<RequestId>" if isinstance(body, str) else b"<RequestId>"
    if isinstance(body, (str, bytes)) and marker not in body:
        return _MOTO_ENRICH(headers, "")[0], body
    return _MOTO_ENRICH(headers, body)


_enriched_static = staticmethod(_enriched)   # moto's is a static method of BaseResponse
_MOTO_BACKEND_FOR_HOST = DomainDispatcherApplication.get_backend_for_host


def _backend_for_host_remembered(dispatcher: DomainDispatcherApplication, host):
    """moto's backend for a host, worked out once per dispatcher and host.

    moto works it out on every request by scanning its table of URL patterns under one global lock. It is
    called with a few fixed keys (None, "moto_api", a service's host worked out from the request); the answer
    depends only on that and moto's own tables.
    """
    remembered = dispatcher.__dict__.setdefault("_backend_by_host", {})
    if host not in remembered:
        remembered[host] = _MOTO_BACKEND_FOR_HOST(dispatcher, host)
    return remembered[host]


def _stack_resource_described(backend, stack_name: str, logical_resource_id: str):
    """moto's describe_stack_resource, past the resources a false condition left out (None in its map)."""
    stack = backend.get_stack(stack_name)
    for resource in stack.stack_resources:
        if resource is not None and resource.logical_resource_id == logical_resource_id:
            return stack, resource
    raise ValidationError(stack_name, f"Resource {logical_resource_id} does not exist for stack {stack_name}")
