//! How client subcommands show a run: a progress bar on a terminal, JSON lines otherwise.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use toolstream::pb;

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

/// One event as a JSON line: the canonical proto3 JSON of the `RunEvent`, exactly what the
/// HTTP routes and the WebSocket send (the event's kind is the one key among `started`,
/// `progress`, `result`, ...; `sequence` is a string).
pub(super) fn event_json(event: &pb::RunEvent) -> String {
    toolstream::json_proto::to_json(event).unwrap_or_else(|error| {
        // Only a non-finite number inside a `Value` cannot be written; say so on the line.
        serde_json::json!({"runId": event.run_id, "error": error.to_string()}).to_string()
    })
}

/// Prints a gRPC error for a person and picks the exit code.
pub(super) fn status_exit(status: &tonic::Status) -> ExitCode {
    eprintln!("error: {:?}: {}", status.code(), status.message());
    ExitCode::FAILURE
}
