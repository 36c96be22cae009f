//! From engine events to wire events.

use std::time::{Duration, SystemTime};

use crate::agent::AgentRequest;
use crate::engine::{self, CallArguments, EventKind};
use crate::json_proto::{json_to_struct, json_to_value, struct_to_json};
use crate::pb;

pub(crate) fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    prost_types::Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

fn millis(duration: Option<Duration>) -> u32 {
    duration.map_or(0, |d| d.as_millis().min(u32::MAX as u128) as u32)
}

fn options(options: engine::RunOptions) -> pb::RunOptions {
    pb::RunOptions {
        min_progress_interval_ms: millis(options.min_progress_interval),
        on_disconnect: match options.on_disconnect {
            engine::OnDisconnect::Cancel => pb::OnDisconnect::Cancel,
            engine::OnDisconnect::Continue => pb::OnDisconnect::Continue,
        } as i32,
        heartbeat_interval_ms: millis(options.heartbeat_interval),
    }
}

/// Options as the client sent them; absent means the defaults.
pub(crate) fn run_options(options: Option<pb::RunOptions>) -> engine::RunOptions {
    let options = options.unwrap_or_default();
    let interval = |ms: u32| (ms > 0).then(|| Duration::from_millis(u64::from(ms)));
    engine::RunOptions {
        min_progress_interval: interval(options.min_progress_interval_ms),
        on_disconnect: match options.on_disconnect() {
            pb::OnDisconnect::Continue => engine::OnDisconnect::Continue,
            pb::OnDisconnect::Cancel | pb::OnDisconnect::Unspecified => {
                engine::OnDisconnect::Cancel
            }
        },
        heartbeat_interval: interval(options.heartbeat_interval_ms),
    }
}

/// A RunTool request in engine terms.
pub(crate) fn tool_run_request(
    request: pb::RunToolRequest,
    deadline: Option<Duration>,
) -> engine::ToolRunRequest {
    engine::ToolRunRequest {
        tool: request.tool,
        arguments: request
            .arguments
            .map(|a| serde_json::Value::Object(struct_to_json(a))),
        options: run_options(request.options),
        deadline,
        principal: None,
    }
}

/// A RunAgent request in engine terms.
pub(crate) fn agent_request(
    request: pb::RunAgentRequest,
    deadline: Option<Duration>,
) -> AgentRequest {
    AgentRequest {
        prompt: request.prompt,
        system_prompt: request.system_prompt,
        tools: request.tools,
        model: request.model,
        max_steps: request.max_steps,
        options: run_options(request.options),
        deadline,
        principal: None,
    }
}

/// A run's recorded arguments as a wire `Struct`: they were a JSON object when the run was
/// accepted (the input schema checked that), so anything else has nothing to show.
pub(crate) fn arguments_to_wire(arguments: serde_json::Value) -> Option<prost_types::Struct> {
    match arguments {
        serde_json::Value::Object(object) => Some(json_to_struct(object)),
        _ => None,
    }
}

/// Where a WatchRun request starts reading.
pub(crate) fn watch_from(request: &pb::WatchRunRequest) -> engine::ReadFrom {
    if request.from_latest {
        engine::ReadFrom::Latest
    } else {
        engine::ReadFrom::After(request.after_sequence)
    }
}

pub(crate) fn progress(
    call: &engine::CallTag,
    update: &crate::tools::ProgressUpdate,
    eta_seconds: Option<f64>,
) -> pb::Progress {
    pb::Progress {
        progress: update.fraction,
        status: update.status.clone(),
        data: (!update.data.is_empty()).then(|| json_to_struct(update.data.clone())),
        call_id: call.call_id.to_string(),
        tool: call.tool.to_string(),
        parent_call_id: call.parent_call_id.to_string(),
        eta_seconds,
    }
}

impl From<&engine::RunEvent> for pb::RunEvent {
    fn from(event: &engine::RunEvent) -> Self {
        use pb::run_event::Event;
        let run_id = event.run_id.to_string();
        // Taken apart by reference: only what goes on the wire is copied.
        let body = match &event.kind {
            EventKind::Started(started) => Event::Started(pb::RunStarted {
                run_id: run_id.clone(),
                tool: started.tool.clone(),
                model: started.model.clone(),
                tools: started.tools.clone(),
                max_steps: started.max_steps,
                options: Some(options(started.options)),
                deadline_ms: started
                    .deadline
                    .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64),
            }),
            EventKind::Progress {
                call,
                update,
                eta_seconds,
            } => Event::Progress(progress(call, update, *eta_seconds)),
            EventKind::Result(value) => Event::Result(pb::Result {
                value: Some(json_to_value(value.clone())),
            }),
            EventKind::ToolCallStarted { call, arguments } => {
                let (arguments, raw_arguments) = match arguments {
                    CallArguments::Object(object) => {
                        (Some(json_to_struct(object.clone())), String::new())
                    }
                    CallArguments::Raw(raw) => (None, raw.clone()),
                };
                Event::ToolCallStarted(pb::ToolCallStarted {
                    call_id: call.call_id.to_string(),
                    tool: call.tool.to_string(),
                    arguments,
                    parent_call_id: call.parent_call_id.to_string(),
                    raw_arguments,
                })
            }
            EventKind::ToolCallFinished { call, outcome } => {
                use pb::tool_call_finished::Outcome;
                Event::ToolCallFinished(pb::ToolCallFinished {
                    call_id: call.call_id.to_string(),
                    tool: call.tool.to_string(),
                    outcome: Some(match outcome {
                        Ok(value) => Outcome::Result(json_to_value(value.clone())),
                        Err(error) => Outcome::Error(error.clone()),
                    }),
                    parent_call_id: call.parent_call_id.to_string(),
                })
            }
            EventKind::Message(text) => Event::Message(pb::MessageDelta { text: text.clone() }),
            EventKind::PartialResult { call, output } => Event::PartialResult(pb::PartialResult {
                call_id: call.call_id.to_string(),
                tool: call.tool.to_string(),
                parent_call_id: call.parent_call_id.to_string(),
                key: output.key.clone(),
                value: Some(json_to_value(output.value.clone())),
                append: output.append,
            }),
            EventKind::Gap { from, to, reason } => Event::Gap(pb::Gap {
                from_sequence: *from,
                to_sequence: *to,
                reason: reason.clone(),
            }),
            EventKind::Heartbeat { last_sequence } => Event::Heartbeat(pb::Heartbeat {
                last_sequence: *last_sequence,
            }),
        };
        pb::RunEvent {
            run_id,
            sequence: event.sequence,
            timestamp: Some(timestamp(event.timestamp)),
            event: Some(body),
        }
    }
}
