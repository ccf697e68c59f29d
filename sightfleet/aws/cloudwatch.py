"""CloudWatch: the stack's metrics namespace (controller and workers publish, the dashboard reads)."""
from __future__ import annotations

from datetime import datetime, timezone

from sightfleet.aws.session import client, translated
from sightfleet.config import Settings

# High-resolution (1 s) storage by default: AWS only answers periods under 60 s (the ops
# dashboard's 5 to 30 s steps) for metrics stored that way; it costs the same per metric.
HIGH_RESOLUTION = 1


class Metrics:
    """Put and read plain metrics in the stack's namespace."""

    def __init__(self, settings: Settings):
        self.namespace = settings.names.metrics_namespace
        self._cw = client(settings, "cloudwatch")

    def put(self, values: dict[str, float], unit: str = "Count", dimensions: dict[str, str] | None = None,
            storage_resolution: int = HIGH_RESOLUTION, timestamp: datetime | None = None) -> None:
        """Publish one datapoint per metric name, timestamped now unless a timestamp is given."""
        now = timestamp or datetime.now(timezone.utc)
        dims = [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()]
        data = [{"MetricName": name, "Value": float(value), "Unit": unit, "Timestamp": now, "Dimensions": dims,
                 "StorageResolution": storage_resolution}
                for name, value in values.items()]
        for start in range(0, len(data), 20):
            with translated(f"put metrics to {self.namespace}"):
                self._cw.put_metric_data(Namespace=self.namespace, MetricData=data[start:start + 20])

    def series(self, names: list[str], start: datetime, end: datetime, period_s: int = 60,
               stat: str = "Average") -> dict[str, list[tuple[datetime, float]]]:
        """Each metric's datapoints between start and end, oldest first."""
        queries = [{"Id": f"m{i}", "Label": name, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": self.namespace, "MetricName": name}, "Period": period_s, "Stat": stat}}
            for i, name in enumerate(names)]
        out: dict[str, list[tuple[datetime, float]]] = {name: [] for name in names}
        params = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
        while True:
            with translated(f"get metrics from {self.namespace}"):
                reply = self._cw.get_metric_data(**params)
            for result in reply["MetricDataResults"]:
                out[result["Label"]].extend(zip(result["Timestamps"], result["Values"]))
            if not reply.get("NextToken"):
                break
            params["NextToken"] = reply["NextToken"]
        return {name: sorted(points) for name, points in out.items()}
