"""The moto internals that the local endpoint replaces, as one list: where, by what, why, and the test proving the
same answers; applied only on the moto versions they were tested against.

Each replacement (devstack/moto_repairs.py) gives moto's own answer for less CPU. They reach into moto's private
code, which any release may change, so they are put in place only when the installed moto is one of
TESTED_MOTO_VERSIONS (requirements.txt pins it; a test keeps the two the same). On any other version the endpoint
logs a warning and serves plain moto, slower but right. SIGHTFLEET_EMULATOR_PATCHES=off (or the emulator's
`--moto-patches off`) serves plain moto on purpose, to tell a moto bug from one of ours. The emulator's parity
tests and one end-to-end test run both ways. docs/moto-upstream.md writes up each general slowness as a change to
offer moto, so that its patch can be deleted here once moto has it.

The snapshots (devstack/local_state.py) read moto's private state too, and make a long poll step out of the
request gate (`devstack.emulator._long_polls_step_out`); they are a feature, not a speed-up, so the setting leaves
them on, but they also run only on a tested version (`moto_is_tested`).
"""
from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

log = logging.getLogger(__name__)
TESTED_MOTO_VERSIONS = frozenset({"5.2.5"})
REPAIRS = "devstack.moto_repairs"
PARITY = "tests/test_emulator.py::"


@dataclass(frozen=True)
class Patch:
    """One of moto's attributes replaced: `target` is "module:Owner.attribute" (or "module:function")."""

    target: str
    replacement: str   # a name in devstack/moto_repairs.py
    why: str
    proven_by: str     # the test that shows moto's answers and the replacement's are the same
    everywhere: bool = False   # a function: rebound too in every moto module that imported it by name


PATCHES = (
    Patch("moto.moto_server.werkzeug_app:DomainDispatcherApplication.get_backend_for_host",
          "_backend_for_host_remembered", "each request scanned moto's table of URL patterns under its global lock",
          PARITY + "test_remembered_backends_are_the_ones_moto_finds"),
    Patch("moto.core.base_backend:BackendDict._create_account_specific_backend", "_account_backend_once",
          "every backend lookup (several a request) compared with every registered service under the global lock",
          PARITY + "test_an_account_backend_is_made_and_registered_again_after_a_reset"),
    Patch("moto.sqs.models:SQSBackend.is_message_valid_based_on_retention_period", "_retention_check",
          "a receive built every queue attribute, counting all messages, for each message it handed out",
          PARITY + "test_the_retention_check_agrees_with_motos_own"),
    Patch("moto.sqs.models:SQSBackend.get_queue_attributes", "_queue_attributes",
          "a read of n attributes built all of them 3n times, each build counting every message",
          PARITY + "test_queue_attributes_are_motos_own"),
    Patch("moto.sqs.models:SQSBackend.send_message", "_send_without_counting",
          "a send counted the whole queue three times to read one attribute (with the three counts below)",
          PARITY + "test_counts_are_right_outside_sends_and_fifo_deduplication_still_reads_its_attribute"),
    Patch("moto.sqs.models:Queue.approximate_number_of_messages", "_VISIBLE_COUNT",
          "counted on every send, which never reads it",
          PARITY + "test_counts_are_right_outside_sends_and_fifo_deduplication_still_reads_its_attribute"),
    Patch("moto.sqs.models:Queue.approximate_number_of_messages_delayed", "_DELAYED_COUNT",
          "counted on every send, which never reads it",
          PARITY + "test_counts_are_right_outside_sends_and_fifo_deduplication_still_reads_its_attribute"),
    Patch("moto.sqs.models:Queue.approximate_number_of_messages_not_visible", "_NOT_VISIBLE_COUNT",
          "counted on every send, which never reads it",
          PARITY + "test_counts_are_right_outside_sends_and_fifo_deduplication_still_reads_its_attribute"),
    Patch("moto.core.responses:BaseResponse._enrich_response", "_enriched_static",
          "every response body, JSON and photos included, went through a look-behind regex for an XML <RequestId>",
          PARITY + "test_responses_are_enriched_as_moto_does"),
    Patch("moto.core.utils:camelcase_to_underscores", "_camelcase_to_underscores",
          "a regex pass for the same few action and attribute names, about twice a request",
          PARITY + "test_remembered_helpers_answer_as_motos_own", everywhere=True),
    Patch("moto.core.utils:method_names_from_class", "_method_names",
          "inspect.getmembers over a whole handler class on every request",
          PARITY + "test_remembered_helpers_answer_as_motos_own", everywhere=True),
    Patch("moto.moto_api._internal.moto_random:MotoRandom.get_random_string", "_random_string",
          "each request id drawn one character per call", PARITY + "test_remembered_helpers_answer_as_motos_own"),
    Patch("moto.moto_api._internal.moto_random:MotoRandom.get_random_hex", "_random_hex",
          "each hex id drawn one character per call", PARITY + "test_remembered_helpers_answer_as_motos_own"),
    Patch("moto.dynamodb.comparisons:ConditionExpressionParser.parse", "_parsed_once",
          "each DynamoDB condition parsed anew on every write (the worker repeats the same few on every image)",
          PARITY + "test_a_remembered_condition_is_the_tree_moto_parses"),
    Patch("moto.core.serialize:XFormedAttributePicker.get_possible_keys", "_possible_keys_remembered",
          "the names to look a response member up by, worked out anew for every member of every item",
          PARITY + "test_every_kind_of_attribute_value_reads_back_as_written"),
    Patch("moto.core.serialize:XFormedAttributePicker.__call__", "_picked_from_dict",
          "each member of a plain dict looked up through that same work",
          PARITY + "test_every_kind_of_attribute_value_reads_back_as_written"),
    # Not a speed-up but moto's bug: a resource moto does not model (a CloudWatch alarm) is None in its map, and
    # DescribeStackResource then answers 500 for every resource of the stack (scripts/destroy asks for one).
    Patch("moto.cloudformation.models:CloudFormationBackend.describe_stack_resource", "_stack_resource_described",
          "a stack with a resource moto does not model answered 500 to DescribeStackResource",
          PARITY + "test_a_stack_resource_is_described_beside_one_moto_cannot_model"),
)


def installed_moto_version() -> str:
    try:
        return version("moto")
    except PackageNotFoundError:
        return "none"


def moto_is_tested(found: str | None = None) -> bool:
    """Whether the installed moto (or `found`) is a version the patches and the snapshots were tested against."""
    return (found or installed_moto_version()) in TESTED_MOTO_VERSIONS


def apply_patches(enabled: bool = True, found: str | None = None, patches: tuple[Patch, ...] = PATCHES) -> bool:
    """Put every patch in place, or none: none when they are turned off or moto is another version (logged)."""
    found = found or installed_moto_version()
    if not enabled:
        log.info("moto patches off (SIGHTFLEET_EMULATOR_PATCHES=off): serving plain moto %s", found)
        return False
    if not moto_is_tested(found):
        log.warning("moto %s is not a version the endpoint's patches were tested against (%s): serving plain moto, "
                    "slower; pin moto==%s (requirements.txt) for the faster endpoint", found,
                    ", ".join(sorted(TESTED_MOTO_VERSIONS)), max(TESTED_MOTO_VERSIONS))
        return False
    repairs = importlib.import_module(REPAIRS)   # imports moto's internals: only on a tested version
    # Every target found before any is replaced: all patches or none.
    places = [(patch, *resolve(patch.target), getattr(repairs, patch.replacement)) for patch in patches]
    for patch, owner, name, replacement in places:
        _put(owner, name, replacement, patch.everywhere)
    log.info("moto %s: %d patches in place (devstack/moto_patches.py)", found, len(patches))
    return True


def resolve(target: str) -> tuple[object, str]:
    """The object that holds a target's attribute, and the attribute's name; AttributeError if moto has neither."""
    module_name, _, path = target.partition(":")
    owner: object = importlib.import_module(module_name)
    *owners, name = path.split(".")
    for each in owners:
        owner = getattr(owner, each)
    getattr(owner, name)
    return owner, name


def _put(owner: object, name: str, replacement: object, everywhere: bool) -> None:
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    if everywhere:
        for module_name, module in list(sys.modules.items()):
            if module_name.startswith("moto.") and module is not None and getattr(module, name, None) is original:
                setattr(module, name, replacement)
