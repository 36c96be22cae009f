//! From engine events to wire events.

use std::collections::BTreeMap;
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
        input_timeout_ms: millis(options.input_timeout),
        ..pb::RunOptions::default()
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
        input_timeout: interval(options.input_timeout_ms),
    }
}

/// The labels and idempotency key of a RunTool/RunAgent request's options.
fn creation(options: Option<&pb::RunOptions>) -> (BTreeMap<String, String>, String) {
    options.map_or_else(Default::default, |options| {
        (
            options
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            options.idempotency_key.clone(),
        )
    })
}

/// A RunTool request in engine terms.
pub(crate) fn tool_run_request(
    request: pb::RunToolRequest,
    deadline: Option<Duration>,
) -> engine::ToolRunRequest {
    let (labels, idempotency_key) = creation(request.options.as_ref());
    engine::ToolRunRequest {
        tool: request.tool,
        arguments: request
            .arguments
            .map(|a| serde_json::Value::Object(struct_to_json(a))),
        options: run_options(request.options),
        deadline,
        owner: None,
        labels,
        idempotency_key,
    }
}

/// A RunAgent request in engine terms.
pub(crate) fn agent_request(
    request: pb::RunAgentRequest,
    deadline: Option<Duration>,
) -> AgentRequest {
    let (labels, idempotency_key) = creation(request.options.as_ref());
    AgentRequest {
        labels,
        idempotency_key,
        prompt: request.prompt,
        system_prompt: request.system_prompt,
        tools: request.tools,
        model: request.model,
        max_steps: request.max_steps,
        options: run_options(request.options),
        deadline,
        owner: None,
        approval_required: request.approval_required,
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

/// An input request as the wire carries it (its event, and `Run.pending_inputs`).
pub(crate) fn input_requested(request: &engine::InputRequest) -> pb::InputRequested {
    pb::InputRequested {
        request_id: request.request_id.to_string(),
        call_id: request.call.call_id.to_string(),
        tool: request.call.tool.to_string(),
        parent_call_id: request.call.parent_call_id.to_string(),
        prompt: request.prompt.clone(),
        schema: request.schema.clone().and_then(arguments_to_wire),
        kind: match request.kind {
            crate::tools::InputKind::Input => pb::InputKind::Input,
            crate::tools::InputKind::Approval => pb::InputKind::Approval,
        } as i32,
        data: request.data.clone().map(json_to_struct),
        expire_time: request.expire_time.map(timestamp),
    }
}

/// What RespondToRun asks, in engine terms.
pub(crate) fn reply(request: &pb::RespondToRunRequest) -> engine::Reply {
    if request.decline {
        engine::Reply::Decline
    } else {
        engine::Reply::Value(
            request
                .value
                .clone()
                .map_or(serde_json::Value::Null, crate::json_proto::value_to_json),
        )
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
                // Empty for an agent run, as the contract says.
                tool: started.kind.tool_name().to_owned(),
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
            EventKind::InputRequested(request) => Event::InputRequested(input_requested(request)),
            EventKind::InputResolved {
                request_id,
                outcome,
            } => {
                let (outcome, value) = match outcome {
                    engine::InputOutcome::Answered(value) => (
                        pb::InputOutcome::Answered,
                        Some(json_to_value(value.clone())),
                    ),
                    engine::InputOutcome::Declined => (pb::InputOutcome::Declined, None),
                    engine::InputOutcome::Expired => (pb::InputOutcome::Expired, None),
                    engine::InputOutcome::Cancelled => (pb::InputOutcome::Cancelled, None),
                };
                Event::InputResolved(pb::InputResolved {
                    request_id: request_id.to_string(),
                    outcome: outcome as i32,
                    value,
                })
            }
            EventKind::PartialResult { call, output } => Event::PartialResult(pb::PartialResult {
                call_id: call.call_id.to_string(),
                tool: call.tool.to_string(),
                parent_call_id: call.parent_call_id.to_string(),
                key: output.key.clone(),
                value: Some(output.proto_value()),
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

/// The tools a ListTools answers, as the wire message.
pub(crate) fn tools_to_wire(specs: Vec<crate::tools::ToolSpec>) -> pb::ListToolsResponse {
    let tools = specs
        .into_iter()
        .map(|spec| pb::Tool {
            input_schema: schema_to_wire(&spec.input_schema),
            output_schema: spec.output_schema.as_ref().and_then(schema_to_wire),
            kind: spec.kind.as_str().to_owned(),
            name: spec.name,
            description: spec.description,
        })
        .collect();
    pb::ListToolsResponse { tools }
}

/// A JSON Schema as a `Struct` (a schema that is not an object has none).
fn schema_to_wire(schema: &serde_json::Value) -> Option<prost_types::Struct> {
    match schema {
        serde_json::Value::Object(object) => Some(json_to_struct(object.clone())),
        _ => None,
    }
}
