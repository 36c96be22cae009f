"""Reads a toolstream server's /metrics with the Prometheus project's own parser and checks it
against the runs the Rust test made (tests/it/metrics.rs): 3 successful `ticks` runs, a RunTool of an
unknown tool, an `endless` run cancelled by its caller, and a ListTools over gRPC-Web.

Usage: metrics_check.py URL UNKNOWN_TOOL. Prints one line per check and exits non-zero on the first
failure.
"""

import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

TOOL_SERVICE = "toolstream.v1.ToolService"


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def main():
    url, unknown_tool = sys.argv[1], sys.argv[2]
    with urllib.request.urlopen(url, timeout=10) as response:
        content_type = response.headers.get("content-type", "")
        text = response.read().decode("utf-8")
    check(content_type.startswith("text/plain"), f"served as Prometheus text ({content_type})")

    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples = [sample for family in families.values() for sample in family.samples]

    def value(name, **labels):
        """The one sample `name` whose labels include `labels`; 0 when there is none."""
        found = [
            s.value
            for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        check(len(found) <= 1, f"at most one {name} sample with {labels}")
        return found[0] if found else 0

    for family, kind in [
        ("grpc_server_started", "counter"),
        ("grpc_server_handled", "counter"),
        ("grpc_server_msg_received", "counter"),
        ("grpc_server_msg_sent", "counter"),
        ("grpc_server_handling_seconds", "histogram"),
        ("toolstream_runs_active", "gauge"),
        ("toolstream_runs_started", "counter"),
        ("toolstream_runs_finished", "counter"),
        ("toolstream_run_duration_seconds", "histogram"),
        ("toolstream_events_produced", "counter"),
        ("toolstream_events_delivered", "counter"),
        ("toolstream_events_coalesced", "counter"),
        ("toolstream_tool_processes", "gauge"),
    ]:
        check(family in families and families[family].type == kind, f"{family} is a {kind}")

    run_tool = dict(grpc_service=TOOL_SERVICE, grpc_method="RunTool", grpc_type="server_stream")
    check(value("grpc_server_started_total", **run_tool) == 5, "5 RunTool calls started")
    check(value("grpc_server_handled_total", grpc_code="OK", **run_tool) == 3, "3 RunTool OK")
    check(
        value("grpc_server_handled_total", grpc_code="NotFound", **run_tool) == 1,
        "the unknown tool's RunTool handled with NotFound",
    )
    check(
        value("grpc_server_handled_total", grpc_code="Canceled", **run_tool) == 1,
        "the abandoned RunTool handled as Canceled",
    )
    check(value("grpc_server_msg_received_total", **run_tool) == 5, "one request message per RunTool")
    check(
        value("grpc_server_msg_sent_total", **run_tool) >= 3 * 2 + 1,
        "RunTool sent at least the started and result events of each successful run",
    )
    check(
        value("grpc_server_handling_seconds_count", **run_tool) == 5,
        "handling latency observed once per RunTool",
    )
    list_tools = dict(grpc_service=TOOL_SERVICE, grpc_method="ListTools", grpc_type="unary")
    check(
        value("grpc_server_handled_total", grpc_code="OK", **list_tools) == 1,
        "the gRPC-Web ListTools counted as a unary call",
    )
    check(value("grpc_server_msg_sent_total", **list_tools) == 1, "ListTools sent one message")

    check(value("toolstream_runs_started_total", tool="ticks") == 3, "3 ticks runs started")
    check(value("toolstream_runs_started_total", tool="endless") == 1, "1 endless run started")
    check(
        value("toolstream_runs_finished_total", tool="ticks", code="OK") == 3,
        "3 ticks runs finished OK",
    )
    check(
        value("toolstream_runs_finished_total", tool="endless", code="Canceled") == 1,
        "the endless run finished Canceled",
    )
    check(value("toolstream_runs_active") == 0, "no run active once all ended")

    buckets = sorted(
        (float(s.labels["le"]), s.value)
        for s in samples
        if s.name == "toolstream_run_duration_seconds_bucket" and s.labels.get("tool") == "ticks"
    )
    check(len(buckets) > 2 and buckets[-1] == (float("inf"), 3), "run duration +Inf bucket holds 3")
    check(
        all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])),
        "run duration buckets are cumulative",
    )
    check(value("toolstream_run_duration_seconds_count", tool="ticks") == 3, "duration count 3")
    check(value("toolstream_run_duration_seconds_sum", tool="ticks") > 0, "duration sum > 0")

    produced = value("toolstream_events_produced_total")
    delivered = value("toolstream_events_delivered_total")
    check(produced >= 3 * 22, f"events produced ({produced}) include every ticks event")
    check(delivered > 0, f"events delivered ({delivered})")
    check(produced >= delivered, "one reader per run: produced >= delivered")
    check(value("toolstream_events_coalesced_total") >= 0, "events coalesced present")
    check(value("toolstream_tool_processes") >= 0, "tool processes present")

    label_values = {v for s in samples for v in s.labels.values()}
    check(unknown_tool not in label_values, "the unknown tool's name is no label value")


if __name__ == "__main__":
    main()
