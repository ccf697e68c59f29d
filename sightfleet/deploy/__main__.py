"""`python -m sightfleet.deploy deploy|destroy` (scripts/deploy, scripts/destroy): one stack per SIGHTFLEET_PREFIX.

AWS credentials and region come from the usual boto3 chain; AWS_ENDPOINT_URL points both at
another endpoint (the tests use a local one). With neither credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE)
nor an endpoint in the environment while scripts/run is up, both go to its local endpoint (and say so). Logs go to stderr; deploy's web URL and
`--template` go to stdout.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields, replace

from sightfleet.config import ConfigError, Settings
from sightfleet.deploy.cloudformation import Waiting, deploy, destroy, planned_template
from sightfleet.deploy.exposure import Refused, decide, own_address
from sightfleet.deploy.template import PARAMETER_DOCS, DeployOptions
from sightfleet.errors import SightfleetError
from sightfleet.local_access import use_local_aws_env
from sightfleet.logs import setup_logging

log = logging.getLogger("sightfleet.deploy")


def _deploy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/deploy", description=(
            "Create or update the CloudFormation stack named SIGHTFLEET_PREFIX (default sightfleet) and wait "
            "for it; then check every resource and print the web URL. Other SIGHTFLEET_* settings in the "
            "environment (SIGHTFLEET_INPUT_BUCKET, SIGHTFLEET_IDLE_GRACE_S, ...) go to the instances."))
    parser.add_argument("--template", action="store_true", help="print the template and exit (calls no AWS API)")
    parser.add_argument("--max-instances", type=int, help="cap of the worker fleet (default SIGHTFLEET_MAX_INSTANCES, 19)")
    defaults = DeployOptions()
    for spec in fields(DeployOptions):
        flag, default = "--" + spec.name.replace("_", "-"), getattr(defaults, spec.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=f"{PARAMETER_DOCS[spec.name]} (default: %(default)s)")
        else:
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{PARAMETER_DOCS[spec.name]} (default: %(default)r)")
    parser.add_argument("--timeout-min", type=float, default=60, help="give up waiting for the stack after this")
    return parser


def _destroy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/destroy", description=(
            "Stop the controller and every worker, empty the stack's buckets (every image and result is lost), "
            "delete the stack named SIGHTFLEET_PREFIX and the artefacts bucket, and check nothing is left."))
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation on a terminal")
    parser.add_argument("--timeout-min", type=float, default=60, help="give up waiting for the stack after this")
    return parser


def run_deploy(argv: list[str]) -> int:
    args = _deploy_parser().parse_args(argv)
    settings = Settings.from_env()
    if args.max_instances is not None:
        settings = replace(settings, max_instances=args.max_instances)
    options = DeployOptions(**{spec.name: getattr(args, spec.name) for spec in fields(DeployOptions)})
    if args.template:
        sys.stdout.write(json.dumps(planned_template(settings, options), indent=2, sort_keys=True) + "\n")
        return 0
    # Decided before anything is uploaded or created.
    exposure = decide(options.certificate_arn, options.client_cidr, options.allow_plain_http, own_address())
    (log.warning if exposure.plain_http else log.info)("the stack will be %s", exposure.notice)
    log.info("POST / (the course endpoint) %s", "takes uploads without credentials" if options.open_course_endpoint
             else "needs credentials (--open-course-endpoint opens it)")
    options = replace(options, client_cidr=exposure.client_cidr)
    url = deploy(settings, options, Waiting(timeout_s=args.timeout_min * 60))
    log.info("web tier: %s (the first instances take a few minutes to boot)", url)
    sys.stdout.write(url + "\n")
    return 0


def run_destroy(argv: list[str]) -> int:
    args = _destroy_parser().parse_args(argv)
    settings = Settings.from_env()
    if sys.stdin.isatty() and not args.yes:
        where = settings.endpoint_url or f"AWS {settings.region}"
        answer = input(f"Delete stack {settings.names.stack_name} on {where} with all its images and results? "
                       "Type the prefix to confirm: ")
        if answer.strip() != settings.prefix:
            log.error("not confirmed: nothing was deleted")
            return 1
    destroy(settings, Waiting(timeout_s=args.timeout_min * 60))
    return 0


COMMANDS = {"deploy": run_deploy, "destroy": run_destroy}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(f"usage: python -m sightfleet.deploy {{{','.join(COMMANDS)}}} [options]\n")
        return 2
    setup_logging(argv[0])
    local = use_local_aws_env()
    if local:
        log.warning("%s goes to the running local stack's endpoint (%s): for AWS, set AWS_PROFILE or "
                    "AWS_ACCESS_KEY_ID", argv[0], local)
    try:
        return COMMANDS[argv[0]](argv[1:])
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    except Refused as exc:
        log.error("refusing to deploy: %s", exc)
        return 2
    except SightfleetError as exc:
        log.error("%s failed: %s", argv[0], exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
