"""Cloud sinks: where PublishToCloud results go. One module per provider, one common interface."""

from workloads.vei.sinks.base import CloudSink, SinkError, result_record
from workloads.vei.sinks.spec import SYNTAX, CloudSpec, CloudSpecError, build_sink, parse_cloud_specs

__all__ = ["SYNTAX", "CloudSink", "CloudSpec", "CloudSpecError", "SinkError", "build_sink",
           "parse_cloud_specs", "result_record"]
