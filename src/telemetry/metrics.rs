//! The Prometheus metrics of one server, rendered in the Prometheus text format (0.0.4) at
//! `GET /metrics`.
//!
//! Cardinality stays bounded: a `tool` label is only ever a tool of the registry (a run exists
//! only once its tool was found, so a name a client made up never becomes a label), agent runs are
//! labelled `tool="<agent>"` (no tool name can contain `<`), and a `code` is one of the seventeen
//! gRPC code names. The gRPC metrics ([`super::grpc`]) label only methods the server serves.
//!
//! Counting costs the hot path nothing measurable: the engine reports each run once as it starts
//! and once as it ends, and each stream once as it ends ([`RunObserver`]); gauges of things that
//! exist anyway (runs in progress, tool process groups) are read when `/metrics` is scraped.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::grpc::GrpcMetrics;
use crate::engine::{RunError, RunKind, RunObserver};

/// The `tool` label of agent runs.
pub const AGENT_LABEL: &str = "<agent>";

/// Upper bounds (seconds) of the run duration histogram: runs last from milliseconds to an hour.
const RUN_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    outcome: &'static str,
}

/// Upper bounds (seconds) of the webhook delivery latency histogram: from a run's end to its
/// webhook's acceptance, one attempt (milliseconds) to retries over hours.
const DELIVERY_LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 3600.0, 86400.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    tool: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct McpLabels {
    method: &'static str,
    outcome: &'static str,
}

fn run_duration_histogram() -> Histogram {
    Histogram::new(RUN_DURATION_BUCKETS)
}

/// Every metric of one server, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    /// The gRPC server metrics, shared with the layers around the gRPC services.
    grpc: std::sync::Arc<GrpcMetrics>,
    runs_active: Gauge,
    tool_processes: Gauge,
    runs_started: Family<ToolLabels, Counter>,
    runs_finished: Family<OutcomeLabels, Counter>,
    run_duration: Family<ToolLabels, Histogram, fn() -> Histogram>,
    events_produced: Counter,
    events_delivered: Counter,
    events_coalesced: Counter,
    webhook_deliveries: Family<DeliveryLabels, Counter>,
    webhook_latency: Histogram,
    mcp_requests: Family<McpLabels, Counter>,
    runs_waiting_for_input: Gauge,
    input_wait: Histogram,
}

/// Buckets of the time an input request waits for its answer: people answer in seconds to hours.
const INPUT_WAIT_BUCKETS: [f64; 10] = [
    0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A new set of metrics, all zero.
    pub fn new() -> Self {
        let grpc = std::sync::Arc::new(GrpcMetrics::default());
        let metrics = Metrics {
            registry: Registry::default(),
            grpc,
            runs_active: Gauge::default(),
            tool_processes: Gauge::default(),
            runs_started: Family::default(),
            runs_finished: Family::default(),
            run_duration: Family::new_with_constructor(run_duration_histogram),
            events_produced: Counter::default(),
            events_delivered: Counter::default(),
            events_coalesced: Counter::default(),
            webhook_deliveries: Family::default(),
            webhook_latency: Histogram::new(DELIVERY_LATENCY_BUCKETS),
            mcp_requests: Family::default(),
            runs_waiting_for_input: Gauge::default(),
            input_wait: Histogram::new(INPUT_WAIT_BUCKETS),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Self {
        self.grpc.register(&mut self.registry);
        let registry = &mut self.registry;
        registry.register(
            "toolstream_webhook_deliveries",
            "Webhook deliveries by outcome: delivered (a 2xx), retried (an attempt failed; another \
             follows), gave_up (still failing when the retry time ran out), dropped (the queue was \
             full)",
            self.webhook_deliveries.clone(),
        );
        registry.register(
            "toolstream_webhook_delivery_seconds",
            "Time from a run's end to its webhook's acceptance by the receiver (retries included)",
            self.webhook_latency.clone(),
        );
        registry.register(
            "toolstream_runs_active",
            "Runs in progress (tool and agent runs)",
            self.runs_active.clone(),
        );
        registry.register(
            "toolstream_runs_started",
            "Runs started, by tool (<agent> for agent runs)",
            self.runs_started.clone(),
        );
        registry.register(
            "toolstream_runs_finished",
            "Runs ended, by tool and gRPC code (OK for a result)",
            self.runs_finished.clone(),
        );
        registry.register(
            "toolstream_run_duration_seconds",
            "Time from a run's start to its end, by tool",
            self.run_duration.clone(),
        );
        registry.register(
            "toolstream_events_produced",
            "Events runs produced (the sum of their last sequence numbers)",
            self.events_produced.clone(),
        );
        registry.register(
            "toolstream_events_delivered",
            "Run events handed to streams (gRPC, SSE, WebSocket), counted when each stream ends",
            self.events_delivered.clone(),
        );
        registry.register(
            "toolstream_events_coalesced",
            "Progress events streams skipped because newer progress of the same call replaced them, counted when each stream ends",
            self.events_coalesced.clone(),
        );
        registry.register(
            "toolstream_mcp_requests",
            "MCP requests served at /mcp, by method (tools/list, tools/call) and outcome (ok, tool_error, protocol_error, cancelled)",
            self.mcp_requests.clone(),
        );
        registry.register(
            "toolstream_runs_waiting_for_input",
            "Runs with at least one open input request (state INPUT_REQUIRED) on this replica",
            self.runs_waiting_for_input.clone(),
        );
        registry.register(
            "toolstream_input_wait_seconds",
            "Time from an input request to its resolution (answered, declined, expired or cancelled)",
            self.input_wait.clone(),
        );
        registry.register(
            "toolstream_tool_processes",
            "Tool process groups alive (command tools' runs and MCP servers)",
            self.tool_processes.clone(),
        );
        self
    }

    /// The gRPC server metrics, for [`super::grpc::GrpcMetricsLayer`].
    pub fn grpc(&self) -> &std::sync::Arc<GrpcMetrics> {
        &self.grpc
    }

    /// Counts one MCP request: `method` one the server serves, `outcome` one of `ok`,
    /// `tool_error`, `protocol_error`, `cancelled` (both bounded sets, never client text).
    pub fn mcp_request(&self, method: &'static str, outcome: &'static str) {
        self.mcp_requests
            .get_or_create(&McpLabels { method, outcome })
            .inc();
    }

    /// The metrics in the Prometheus text format, with the gauges read now: `active_runs` runs in
    /// progress, and the live tool process groups.
    pub fn render(&self, active_runs: usize) -> String {
        self.runs_active.set(gauge_value(active_runs));
        self.tool_processes
            .set(gauge_value(crate::tools::processes::live_groups()));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn tool_label(kind: &RunKind) -> String {
    kind.tool().unwrap_or(AGENT_LABEL).to_owned()
}

/// The gRPC code a run's outcome ends its streams with, by name.
fn outcome_code(outcome: Result<(), &RunError>) -> &'static str {
    match outcome {
        Ok(()) => super::code_name(tonic::Code::Ok),
        Err(error) => super::code_name(crate::status::from_run_error(error.clone()).code()),
    }
}

impl Metrics {
    /// Counts a webhook delivery attempt's outcome (`delivered`, `retried`, `gave_up`,
    /// `dropped`).
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&DeliveryLabels { outcome })
            .inc();
    }

    /// Records how long a delivered webhook took from its run's end.
    pub fn webhook_delivered_after(&self, latency: Duration) {
        self.webhook_latency.observe(latency.as_secs_f64());
    }
}

impl RunObserver for Metrics {
    fn run_started(&self, kind: &RunKind) {
        self.runs_started
            .get_or_create(&ToolLabels {
                tool: tool_label(kind),
            })
            .inc();
    }

    fn run_finished(&self, kind: &RunKind, outcome: Result<(), &RunError>, elapsed: Duration) {
        let code = outcome_code(outcome);
        // Called inside the run's span: its outcome goes on the span too.
        crate::traces::record_outcome(&tracing::Span::current(), code);
        let tool = tool_label(kind);
        self.run_duration
            .get_or_create(&ToolLabels { tool: tool.clone() })
            .observe(elapsed.as_secs_f64());
        self.runs_finished
            .get_or_create(&OutcomeLabels { tool, code })
            .inc();
    }

    fn events_produced(&self, count: u64) {
        self.events_produced.inc_by(count);
    }

    fn input_waiting(&self, waiting: bool) {
        if waiting {
            self.runs_waiting_for_input.inc();
        } else {
            self.runs_waiting_for_input.dec();
        }
    }

    fn input_resolved(&self, waited: Duration) {
        self.input_wait.observe(waited.as_secs_f64());
    }

    fn stream_ended(&self, delivered: u64, coalesced: u64) {
        self.events_delivered.inc_by(delivered);
        self.events_coalesced.inc_by(coalesced);
    }
}
