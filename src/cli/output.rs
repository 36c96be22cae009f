//! How client subcommands show a run: a tree of progress bars on a terminal ([`ProgressTree`]),
//! JSON lines otherwise.

use std::io::IsTerminal;
use std::process::ExitCode;

use serde_json::Value;
use toolstream::json_proto::value_to_json;
use toolstream::pb;
use toolstream::pb::run_event::Event;

use super::ask::{Input, RunEvents};
use super::tree::ProgressTree;

/// One event as a JSON line: the canonical proto3 JSON of the `RunEvent`, exactly what the
/// HTTP routes and the WebSocket send (the event's kind is the one key among `started`,
/// `progress`, `result`, ...; `sequence` is a string).
pub(super) fn event_json(event: &pb::RunEvent) -> String {
    toolstream::json_proto::to_json(event).unwrap_or_else(|error| {
        // Only a non-finite number inside a `Value` cannot be written; say so on the line.
        serde_json::json!({"runId": event.run_id, "error": error.to_string()}).to_string()
    })
}

/// A partial result as one readable line for the terminal, printed above the bars: who made it
/// (the call's tool or the sub-task's label, none for the run's own), which output (`output` for
/// the main one), `+=` for an appended item or `=` for a replacement, and the value as compact
/// JSON, cut to fit one line.
pub(super) fn partial_line(partial: &pb::PartialResult) -> String {
    /// The most characters of the value shown; the rest is elided.
    const MAX_VALUE_CHARS: usize = 160;
    let value = partial
        .value
        .clone()
        .map_or(Value::Null, value_to_json)
        .to_string();
    let mut shown: String = value.chars().take(MAX_VALUE_CHARS).collect();
    if value.chars().nth(MAX_VALUE_CHARS).is_some() {
        shown.push('…');
    }
    let who = if partial.tool.is_empty() {
        String::new()
    } else {
        format!("{}: ", partial.tool)
    };
    let key = if partial.key.is_empty() {
        "output"
    } else {
        &partial.key
    };
    let operator = if partial.append { "+=" } else { "=" };
    format!("{who}{key} {operator} {shown}")
}

/// Seconds since the Unix epoch.
pub(super) fn seconds(timestamp: &prost_types::Timestamp) -> f64 {
    timestamp.seconds as f64 + f64::from(timestamp.nanos) / 1e9
}

/// A run's state as the CLI names it (`--state` takes the same names).
pub(super) fn state_name(state: pb::RunState) -> &'static str {
    match state {
        pb::RunState::Unspecified => "unspecified",
        pb::RunState::Running => "running",
        pb::RunState::Succeeded => "succeeded",
        pb::RunState::Failed => "failed",
        pb::RunState::Cancelled => "cancelled",
        pb::RunState::InputRequired => "input_required",
    }
}

/// A run as one JSON line: the canonical proto3 JSON of the `Run`, like [`event_json`].
pub(super) fn run_json(run: &pb::Run) -> String {
    toolstream::json_proto::to_json(run).unwrap_or_else(|error| {
        serde_json::json!({"runId": run.run_id, "error": error.to_string()}).to_string()
    })
}

/// Shows one stream of a run to its end (the caller's own stream, or a watcher's) and picks the
/// exit code: 0 after the `result` event, the status's code when the stream ends with one.
///
/// On a terminal: a tree of bars whose top is named `label` (renamed after the tool once the
/// `started` event says), a bar per sub-task or tool call under it, each partial result as one
/// line above the bars, a note for events the server no longer holds, a prompt (or a note, or an
/// error) for an input request as `input` says, then the result as pretty JSON; heartbeats only
/// keep the stream open and show nothing. Otherwise every event is a JSON line, and only
/// `--no-input` acts on an input request (the command fails).
pub(super) async fn follow(
    events: tonic::Streaming<pb::RunEvent>,
    label: &str,
    mut input: Input,
) -> anyhow::Result<ExitCode> {
    let mut events = RunEvents::new(events);
    let mut view = std::io::stdout()
        .is_terminal()
        .then(|| ProgressTree::new(label));
    let mut run_id = String::new();
    while let Some(item) = events.next().await {
        let event = match item {
            Ok(event) => event,
            Err(status) => {
                if let Some(view) = &mut view {
                    view.abandon();
                }
                return Ok(status_exit(&status));
            }
        };
        if run_id.is_empty() {
            run_id.clone_from(&event.run_id);
        }
        let Some(view) = &mut view else {
            print_line(event_json(&event))?;
            match &event.event {
                Some(Event::Result(_)) => return Ok(ExitCode::SUCCESS),
                Some(Event::InputRequested(request)) => {
                    if let Some(code) = input.requested(&run_id, request, None, &mut events).await {
                        return Ok(code);
                    }
                }
                _ => {}
            }
            continue;
        };
        match event.event {
            Some(Event::Started(started)) if !started.tool.is_empty() => {
                view.set_label(&started.tool);
            }
            Some(Event::Progress(progress)) => view.show(&progress),
            Some(Event::PartialResult(partial)) => view.note(&partial_line(&partial)),
            Some(Event::ToolCallStarted(call)) => {
                view.call_started(&call.call_id, &call.tool, &call.parent_call_id);
            }
            Some(Event::ToolCallFinished(call)) => {
                let error = match &call.outcome {
                    Some(pb::tool_call_finished::Outcome::Error(error)) => Some(error.as_str()),
                    _ => None,
                };
                view.call_finished(&call.call_id, error);
            }
            Some(Event::Gap(gap)) => view.note(&format!(
                "note: events {} to {} are no longer held by the server ({}); \
                 going on with the next one",
                gap.from_sequence, gap.to_sequence, gap.reason
            )),
            Some(Event::InputRequested(request)) => {
                if let Some(code) = input
                    .requested(&run_id, &request, Some(view), &mut events)
                    .await
                {
                    view.abandon();
                    return Ok(code);
                }
            }
            Some(Event::Result(result)) => {
                view.finish();
                let value = result.value.map_or(Value::Null, value_to_json);
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(ExitCode::SUCCESS);
            }
            _ => {}
        }
    }
    // The contract ends every stream with a result or a status: neither means the connection
    // broke, and the run's outcome is unknown here.
    if let Some(view) = &mut view {
        view.abandon();
    }
    if run_id.is_empty() {
        run_id = "RUN_ID".to_owned();
    }
    eprintln!(
        "error: the stream ended without a result or an error; the connection to the server \
         was lost (`toolstream get {run_id}` shows how the run stands)"
    );
    Ok(ExitCode::FAILURE)
}

/// Writes one line to stdout. Unlike `println!`, a reader that went away (`toolstream runs |
/// head -1`) is an error, which `main` turns into a quiet exit, not a panic.
pub(super) fn print_line(line: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    // Line by line: whoever reads a stream of JSON lines sees each event as it happens.
    stdout.flush()?;
    Ok(())
}

/// Whether `error` is stdout's reader having gone away, which ends a command quietly.
pub(super) fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes on one line, `outer: cause: cause`. A cause that says only what the
/// one before it said is left out: libraries often wrap an error in one with the same message
/// (hyper's "tcp connect error" around an I/O error it also calls "tcp connect error").
pub(super) fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(error);
    while let Some(error) = cause {
        let text = error.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cause = error.source();
    }
    parts.join(": ")
}

/// Prints a gRPC error for a person and picks the exit code.
pub(super) fn status_exit(status: &tonic::Status) -> ExitCode {
    eprintln!("error: {:?}: {}", status.code(), status.message());
    ExitCode::FAILURE
}
