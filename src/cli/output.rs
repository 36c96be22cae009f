//! How client subcommands show a run: a progress bar on a terminal, JSON lines otherwise.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use toolstream::json_proto::{struct_to_json, value_to_json};
use toolstream::pb;
use toolstream::pb::run_event::Event;

/// Resolution of the bar: progress is a fraction, shown in thousandths.
const BAR_STEPS: u64 = 1000;

/// A progress bar on stderr for one run.
pub(super) struct ProgressView {
    bar: ProgressBar,
}

impl ProgressView {
    pub(super) fn new(tool: &str) -> Self {
        let bar = ProgressBar::new(BAR_STEPS);
        let style = ProgressStyle::with_template(
            "{spinner:.green} {prefix:.bold} [{bar:40.cyan/blue}] {percent:>3}% {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(tool.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        ProgressView { bar }
    }

    pub(super) fn show(&self, progress: &pb::Progress) {
        if let Some(fraction) = progress.progress {
            self.bar
                .set_position((fraction.clamp(0.0, 1.0) * BAR_STEPS as f64).round() as u64);
        }
        if let Some(status) = &progress.status {
            self.bar.set_message(status.clone());
        }
    }

    pub(super) fn finish(&self) {
        self.bar.finish();
    }

    pub(super) fn abandon(&self) {
        self.bar.abandon();
    }
}

/// One event as a JSON line: the same fields as the wire message, with a `type`.
pub(super) fn event_json(event: &pb::RunEvent) -> Value {
    let timestamp = event
        .timestamp
        .as_ref()
        .map_or(0.0, |t| t.seconds as f64 + f64::from(t.nanos) / 1e9);
    let mut line = json!({
        "run_id": event.run_id,
        "sequence": event.sequence,
        "timestamp": timestamp,
    });
    let (kind, body) = match event.event.clone() {
        Some(Event::Started(started)) => (
            "started",
            json!({
                "tool": started.tool,
                "model": started.model,
                "tools": started.tools,
                "max_steps": started.max_steps,
                "deadline_ms": started.deadline_ms,
            }),
        ),
        Some(Event::Progress(progress)) => (
            "progress",
            json!({
                "progress": progress.progress,
                "status": progress.status,
                "data": progress.data.map(|d| Value::Object(struct_to_json(d))),
                "call_id": progress.call_id,
                "tool": progress.tool,
            }),
        ),
        Some(Event::Result(result)) => {
            ("result", json!({"value": result.value.map(value_to_json)}))
        }
        Some(Event::ToolCallStarted(call)) => (
            "tool_call_started",
            json!({
                "call_id": call.call_id,
                "tool": call.tool,
                "arguments": call.arguments.map(|a| Value::Object(struct_to_json(a))),
            }),
        ),
        Some(Event::ToolCallFinished(call)) => {
            use pb::tool_call_finished::Outcome;
            let (result, error) = match call.outcome {
                Some(Outcome::Result(value)) => (Some(value_to_json(value)), None),
                Some(Outcome::Error(error)) => (None, Some(error)),
                None => (None, None),
            };
            (
                "tool_call_finished",
                json!({"call_id": call.call_id, "tool": call.tool, "result": result, "error": error}),
            )
        }
        Some(Event::Message(message)) => ("message", json!({"text": message.text})),
        Some(Event::Gap(gap)) => (
            "gap",
            json!({"from_sequence": gap.from_sequence, "to_sequence": gap.to_sequence, "reason": gap.reason}),
        ),
        Some(Event::Heartbeat(heartbeat)) => (
            "heartbeat",
            json!({"last_sequence": heartbeat.last_sequence}),
        ),
        None => ("unknown", Value::Null),
    };
    line["type"] = json!(kind);
    if let (Value::Object(line), Value::Object(body)) = (&mut line, body) {
        line.extend(body);
    }
    line
}

/// Prints a gRPC error for a person and picks the exit code.
pub(super) fn status_exit(status: &tonic::Status) -> ExitCode {
    eprintln!("error: {:?}: {}", status.code(), status.message());
    ExitCode::FAILURE
}
