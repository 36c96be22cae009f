//! A run's events as the web sends them: the canonical JSON of each `RunEvent`, made once per
//! event and kept on it beside its gRPC form, and the name of its kind.

use std::sync::Arc;

use crate::engine::{EventKind, RunEvent};
use crate::json_proto::to_json;
use crate::pb;

use super::error::ApiError;

/// The JSON text of one event, as cached on it (or why it cannot be written).
#[derive(Clone)]
struct EventJson(Result<Arc<str>, Arc<str>>);

/// The event's canonical proto3 JSON, on one line.
pub(crate) fn event_json(event: &RunEvent) -> Result<Arc<str>, ApiError> {
    let EventJson(json) = event.other_form(|event| {
        EventJson(
            to_json(&pb::RunEvent::from(event))
                .map(Arc::from)
                .map_err(|e| Arc::from(e.to_string())),
        )
    });
    json.map_err(|reason| ApiError::new(tonic::Code::Internal, reason.to_string()))
}

/// The name of the event's kind: the `RunEvent.event` oneof field's name.
pub(crate) fn event_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Started(_) => "started",
        EventKind::Progress { .. } => "progress",
        EventKind::Result(_) => "result",
        EventKind::ToolCallStarted { .. } => "tool_call_started",
        EventKind::ToolCallFinished { .. } => "tool_call_finished",
        EventKind::Message(_) => "message",
        EventKind::InputRequested(_) => "input_requested",
        EventKind::InputResolved { .. } => "input_resolved",
        EventKind::PartialResult { .. } => "partial_result",
        EventKind::Gap { .. } => "gap",
        EventKind::Heartbeat { .. } => "heartbeat",
    }
}
