"""CloudWatch alarms of a deployed stack: when something needs a person, with an optional e-mail address.

The same conditions the local stack shows as a banner on /ops (web_tier/alerts.py):
- DeadLetters: a message in the dead-letter queue (SQS's own metric).
- WorkerSilent: the controller replaced a worker that stopped sending heartbeats (SilentWorkersReplaced,
  controller/metrics.py), a stalled or crashed worker.
- FleetAtCap: every allowed instance running for AT_CAP_MINUTES minutes (RunningInstances at the cap).
- ControllerSilent: the controller published nothing for CONTROLLER_SILENT_MINUTES (missing data breaches).
- WebUnhealthy: a web instance failing the load balancer's /healthz check (which reaches every queue,
  bucket and table), and ResultsTableErrors: DynamoDB's own system errors on the results table.
All notify one SNS topic; the address (parameter AlarmEmail, empty: none) subscribes to it.
"""
from __future__ import annotations

from sightfleet.config import Settings

AT_CAP_MINUTES = 15
CONTROLLER_SILENT_MINUTES = 5
EMAIL_PATTERN = r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$"
TOPIC = "AlarmTopic"


def _alarm(description: str, namespace: str, metric: str, dimensions: list[dict], statistic: str, threshold: float,
           minutes: int = 1, comparison: str = "GreaterThanOrEqualToThreshold", missing: str = "notBreaching") -> dict:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": description, "Namespace": namespace, "MetricName": metric, "Dimensions": dimensions,
        "Statistic": statistic, "Period": 60, "EvaluationPeriods": minutes, "DatapointsToAlarm": minutes,
        "Threshold": threshold, "ComparisonOperator": comparison, "TreatMissingData": missing,
        "AlarmActions": [{"Ref": TOPIC}], "OKActions": [{"Ref": TOPIC}]}}


def alarm_resources(settings: Settings) -> dict:
    """The topic, its optional subscription and the alarms (logical id -> resource)."""
    names = settings.names
    custom = names.metrics_namespace   # what the controller publishes each tick, no dimensions
    prefix = names.prefix
    return {
        TOPIC: {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{prefix}-alarms",
                                                          "KmsMasterKeyId": "alias/aws/sns"}},
        "AlarmSubscription": {"Type": "AWS::SNS::Subscription", "Condition": "HasAlarmEmail", "Properties": {
            "TopicArn": {"Ref": TOPIC}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}},
        "DeadLettersAlarm": _alarm(
            f"{prefix}: messages in the dead-letter queue; look at their photos on /ops, then retry or redrive",
            "AWS/SQS", "ApproximateNumberOfMessagesVisible",
            [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}], "Maximum", 1),
        "WorkerSilentAlarm": _alarm(
            f"{prefix}: a worker stopped sending heartbeats and was replaced (stalled or crashed)",
            custom, "SilentWorkersReplaced", [], "Sum", 1),
        "FleetAtCapAlarm": _alarm(
            f"{prefix}: the fleet has run at its cap of {settings.max_instances} for {AT_CAP_MINUTES} min",
            custom, "RunningInstances", [], "Minimum", settings.max_instances, AT_CAP_MINUTES),
        "ControllerSilentAlarm": _alarm(
            f"{prefix}: the controller published no figures for {CONTROLLER_SILENT_MINUTES} min",
            custom, "DesiredInstances", [], "SampleCount", 1, CONTROLLER_SILENT_MINUTES, "LessThanThreshold",
            "breaching"),
        "WebUnhealthyAlarm": _alarm(
            f"{prefix}: a web instance fails /healthz (a queue, bucket or table out of reach)",
            "AWS/ApplicationELB", "UnHealthyHostCount",
            [{"Name": "TargetGroup", "Value": {"Fn::GetAtt": ["WebTargetGroup", "TargetGroupFullName"]}},
             {"Name": "LoadBalancer", "Value": {"Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]}}],
            "Maximum", 1, 3),
        "ResultsTableErrorsAlarm": _alarm(
            f"{prefix}: DynamoDB system errors on the results table", "AWS/DynamoDB", "SystemErrors",
            [{"Name": "TableName", "Value": {"Ref": "ResultsTable"}}], "Sum", 1, 5),
    }


def add_alarms(template: dict, settings: Settings) -> dict:
    """The template with the alarms, their topic and the AlarmEmail parameter's check (DeployOptions.alarm_email)."""
    template["Parameters"]["AlarmEmail"]["AllowedPattern"] = EMAIL_PATTERN
    template["Conditions"] = {**template["Conditions"],
                              "HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}}
    template["Resources"].update(alarm_resources(settings))
    template["Outputs"]["AlarmTopic"] = {"Value": {"Ref": TOPIC}}
    return template
