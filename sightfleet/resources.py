"""Handles on every resource of one stack, and their idempotent provisioning."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from sightfleet.aws.accounts import AccountsTable, accounts_table_spec
from sightfleet.aws.cloudwatch import Metrics
from sightfleet.aws.dynamodb import HEARTBEAT_KIND, FleetTable, ResultsTable, ensure_tables
from sightfleet.aws.ec2 import Fleet
from sightfleet.aws.labels import LabelsTable, labels_table_spec
from sightfleet.aws.limits import limits_table_spec
from sightfleet.aws.s3 import Bucket, ensure_bucket
from sightfleet.aws.sqs import Queue, ensure_queues
from sightfleet.config import Settings
from sightfleet.fleet_nudge import fleet_notifier
from sightfleet.interfaces import (AccountStore, FleetControl, FleetLog, JobQueue, LabelIndex, MetricsSink, ObjectStore,
                                   ResultStore)

log = logging.getLogger(__name__)


@dataclass
class Resources:
    """The queues, buckets, tables, fleet and metrics of one stack (boto3-backed from connect())."""

    settings: Settings
    requests: JobQueue
    dead_letters: JobQueue
    responses: JobQueue
    inputs: ObjectStore
    outputs: ObjectStore
    results: ResultStore
    fleet_log: FleetLog
    fleet: FleetControl
    metrics: MetricsSink
    accounts: AccountStore  # who may call the web tier
    labels: LabelIndex      # which images carry which label, and the counts (sightfleet/aws/labels.py)

    @classmethod
    def connect(cls, settings: Settings) -> "Resources":
        names = settings.names
        return cls(
            settings=settings,
            requests=Queue(settings, names.request_queue),
            dead_letters=Queue(settings, names.dead_letter_queue),
            responses=Queue(settings, names.response_queue),
            inputs=Bucket(settings, names.input_bucket),
            outputs=Bucket(settings, names.output_bucket),
            results=ResultsTable(settings),
            fleet_log=FleetTable(settings),
            fleet=Fleet(settings, on_change=fleet_notifier(settings)),
            metrics=Metrics(settings),
            accounts=AccountsTable(settings),
            labels=LabelsTable(settings),
        )

    def checks(self) -> dict[str, Callable[[], object]]:
        """One cheap call per resource, by the name a problem report uses (web_tier/health.py runs them)."""
        return {
            "request queue": self.requests.counts,
            "dead-letter queue": self.dead_letters.counts,
            "response queue": self.responses.counts,
            "input bucket": self.inputs.check,
            "output bucket": self.outputs.check,
            "results table": self.results.check,
            "fleet table": lambda: self.fleet_log.all(HEARTBEAT_KIND, limit=1),
            "accounts table": self.accounts.check,
            "labels table": self.labels.check,
        }


def provision(settings: Settings) -> None:
    """Create every resource the stack needs; safe to run again."""
    names = settings.names
    ensure_queues(settings)
    ensure_bucket(settings, names.input_bucket)
    ensure_bucket(settings, names.output_bucket)
    # Besides results and fleet: accounts (keys, sign-in links) and limits (rate windows, quotas).
    ensure_tables(settings, accounts_table_spec(names.accounts_table), limits_table_spec(names.limits_table),
                  labels_table_spec(names.labels_table))
    log.info("provisioned stack %s (queues, buckets %s/%s, tables)", names.prefix,
             names.input_bucket, names.output_bucket)
