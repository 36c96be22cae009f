//! What the Redis store writes: events and errors as JSON (readable with `redis-cli`), and the
//! run's record as the fields of a hash.
//!
//! The stored forms are their own types, kept apart from the engine's, so that the format is
//! fixed here and the engine's types can change without breaking a fleet mid-upgrade.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::RunKind;
use crate::engine::error::too_many_live_calls;
use crate::engine::event::{CallArguments, CallTag, EventKind, OnDisconnect, RunEvent};
use crate::engine::runs::{RunSnapshot, RunState, SNAPSHOT_CALLS, called_with};
use crate::engine::{
    HeldPartial, InputOutcome, InputRequest, Owner, RunError, RunOptions, RunStarted,
};
use crate::tools::{InputKind, PartialOutput, ProgressUpdate, ToolError};

/// The record field holding the latest progress of the call with this id (empty: the top level).
pub(super) const PROGRESS_FIELD: &str = "p:";
/// The record field holding the `input_requested` event of the open request with this id: a
/// running run with any is INPUT_REQUIRED.
pub(super) const INPUT_FIELD: &str = "i:";

/// A stored event: `e` is a [`StoredKind`], or (read ahead by its kind: see [`decode_event`]) the
/// fields of one of its hot variants.
#[derive(Serialize, Deserialize)]
struct StoredEvent<E> {
    /// The sequence.
    s: u64,
    /// When, in nanoseconds since the Unix epoch.
    t: u64,
    /// What.
    e: E,
}

/// A call as stored. Written borrowed from the event (no copy), read owned.
#[derive(Serialize, Deserialize, Default)]
struct StoredCall<'a> {
    #[serde(default, skip_serializing_if = "is_empty")]
    id: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "is_empty")]
    tool: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "is_empty")]
    parent: Cow<'a, str>,
}

impl StoredCall<'_> {
    fn is_top(&self) -> bool {
        self.id.is_empty() && self.tool.is_empty() && self.parent.is_empty()
    }
}

// serde's `skip_serializing_if` hands over the field itself, a `Cow`.
#[allow(clippy::ptr_arg)]
fn is_empty(text: &Cow<'_, str>) -> bool {
    text.is_empty()
}

/// A progress report as stored (the fields beside `"kind": "progress"`).
#[derive(Serialize, Deserialize)]
struct StoredProgress<'a> {
    #[serde(default, skip_serializing_if = "StoredCall::is_top")]
    call: StoredCall<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    progress: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "no_data")]
    data: Cow<'a, Map<String, Value>>,
    /// The executing replica's estimate of the seconds left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eta: Option<f64>,
}

#[allow(clippy::ptr_arg)]
fn no_data(data: &Cow<'_, Map<String, Value>>) -> bool {
    data.is_empty()
}

/// A partial result as stored (the fields beside `"kind": "partial_result"`).
#[derive(Serialize, Deserialize)]
struct StoredPartial<'a> {
    #[serde(default, skip_serializing_if = "StoredCall::is_top")]
    call: StoredCall<'a>,
    #[serde(default, skip_serializing_if = "is_empty")]
    key: Cow<'a, str>,
    value: Cow<'a, Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    append: bool,
}

/// What a stored event is: its `kind`, then its fields. Progress and partial results, the events
/// a run makes most of, are written borrowed from the engine's event (nothing copied before the
/// JSON) and read without buffering (see [`decode_event`]).
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredKind<'a> {
    Started {
        #[serde(default)]
        tool: String,
        /// A tool run's arguments, for its record.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<Value>,
        /// An agent run's prompt, for its record.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        prompt: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        model: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tools: Vec<String>,
        #[serde(default)]
        max_steps: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_progress_interval_ns: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heartbeat_interval_ns: Option<u64>,
        #[serde(default)]
        continue_without_caller: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ns: Option<u64>,
        /// The run's labels, for its record.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        labels: BTreeMap<String, String>,
        /// The run's idempotency key, for its record.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        idempotency_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_timeout_ns: Option<u64>,
    },
    Progress(StoredProgress<'a>),
    Result {
        value: Value,
    },
    ToolCallStarted {
        call: StoredCall<'a>,
        arguments: StoredArguments,
    },
    ToolCallFinished {
        call: StoredCall<'a>,
        outcome: StoredOutcome,
    },
    Message {
        text: String,
    },
    InputRequested {
        id: String,
        #[serde(default, skip_serializing_if = "StoredCall::is_top")]
        call: StoredCall<'a>,
        prompt: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<Value>,
        /// `input` or `approval`.
        ask: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Map<String, Value>>,
        /// When it lapses, in nanoseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expire_ns: Option<u64>,
    },
    InputResolved {
        id: String,
        /// `answered`, `declined`, `expired` or `cancelled`.
        outcome: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
    },
    PartialResult(StoredPartial<'a>),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredArguments {
    Object(Map<String, Value>),
    Raw(String),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredOutcome {
    Ok(Value),
    Error(String),
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds since the Unix epoch.
pub(super) fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, nanos)
}

/// Milliseconds since the Unix epoch.
pub(super) fn unix_millis(time: SystemTime) -> u64 {
    unix_nanos(time) / 1_000_000
}

fn from_unix_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn call_to_stored(call: &CallTag) -> StoredCall<'_> {
    StoredCall {
        id: Cow::Borrowed(&call.call_id),
        tool: Cow::Borrowed(&call.tool),
        parent: Cow::Borrowed(&call.parent_call_id),
    }
}

fn call_from_stored(call: StoredCall<'_>) -> CallTag {
    CallTag {
        call_id: Arc::from(call.id),
        tool: Arc::from(call.tool),
        parent_call_id: Arc::from(call.parent),
    }
}

/// The event as stored; `None` for gaps and heartbeats, which are never stored.
pub(super) fn encode_event(event: &RunEvent) -> Option<String> {
    let kind = match &event.kind {
        EventKind::Started(started) => StoredKind::Started {
            // An agent run's is empty, as the first releases wrote it.
            tool: started.kind.tool_name().to_owned(),
            arguments: started.arguments.clone(),
            prompt: started.prompt.clone(),
            model: started.model.clone(),
            tools: started.tools.clone(),
            max_steps: started.max_steps,
            min_progress_interval_ns: started.options.min_progress_interval.map(nanos),
            heartbeat_interval_ns: started.options.heartbeat_interval.map(nanos),
            continue_without_caller: started.options.on_disconnect == OnDisconnect::Continue,
            deadline_ns: started.deadline.map(nanos),
            labels: started.labels.clone(),
            idempotency_key: started.idempotency_key.clone(),
            input_timeout_ns: started.options.input_timeout.map(nanos),
        },
        EventKind::Progress {
            call,
            update,
            eta_seconds,
        } => StoredKind::Progress(StoredProgress {
            call: call_to_stored(call),
            progress: update.fraction,
            status: update.status.as_deref().map(Cow::Borrowed),
            data: Cow::Borrowed(&update.data),
            eta: *eta_seconds,
        }),
        EventKind::Result(value) => StoredKind::Result {
            value: value.clone(),
        },
        EventKind::ToolCallStarted { call, arguments } => StoredKind::ToolCallStarted {
            call: call_to_stored(call),
            arguments: match arguments {
                CallArguments::Object(object) => StoredArguments::Object(object.clone()),
                CallArguments::Raw(text) => StoredArguments::Raw(text.clone()),
            },
        },
        EventKind::ToolCallFinished { call, outcome } => StoredKind::ToolCallFinished {
            call: call_to_stored(call),
            outcome: match outcome {
                Ok(value) => StoredOutcome::Ok(value.clone()),
                Err(message) => StoredOutcome::Error(message.clone()),
            },
        },
        EventKind::Message(text) => StoredKind::Message { text: text.clone() },
        EventKind::InputRequested(request) => StoredKind::InputRequested {
            id: request.request_id.to_string(),
            call: call_to_stored(&request.call),
            prompt: request.prompt.clone(),
            schema: request.schema.clone(),
            ask: match request.kind {
                InputKind::Input => "input",
                InputKind::Approval => "approval",
            }
            .to_owned(),
            data: request.data.clone(),
            expire_ns: request.expire_time.map(unix_nanos),
        },
        EventKind::InputResolved {
            request_id,
            outcome,
        } => {
            let (name, value) = match outcome {
                InputOutcome::Answered(value) => ("answered", Some(value.clone())),
                InputOutcome::Declined => ("declined", None),
                InputOutcome::Expired => ("expired", None),
                InputOutcome::Cancelled => ("cancelled", None),
            };
            StoredKind::InputResolved {
                id: request_id.to_string(),
                outcome: name.to_owned(),
                value,
            }
        }
        EventKind::PartialResult { call, output } => StoredKind::PartialResult(StoredPartial {
            call: call_to_stored(call),
            key: Cow::Borrowed(&output.key),
            // Held encoded (see `HeldPartial`): the JSON is made from its bytes.
            value: Cow::Owned(output.value()),
            append: output.append,
        }),
        EventKind::Gap { .. } | EventKind::Heartbeat { .. } => return None,
    };
    let stored = StoredEvent {
        s: event.sequence,
        t: unix_nanos(event.timestamp),
        e: kind,
    };
    serde_json::to_string(&stored).ok()
}

/// An event of run `run_id` read back from the store.
pub(super) fn decode_event(run_id: &Arc<str>, text: &str) -> Result<RunEvent, String> {
    decode_event_bytes(run_id, text.as_bytes())
}

/// The `kind` of a stored event, read ahead of the rest (whose fields are skipped unread).
#[derive(Deserialize)]
struct KindAhead<'a> {
    #[serde(borrow)]
    e: Kind<'a>,
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

/// An event of run `run_id` read back from the store, as the bytes of its entry. Progress and
/// partial results (nearly every entry of a busy run) are read straight into their fields: the
/// kind is read ahead, then the event as that kind's struct. Every other kind is read as
/// [`StoredKind`], whose `kind` tag serde finds wherever it is (buffering the fields before it).
pub(super) fn decode_event_bytes(run_id: &Arc<str>, text: &[u8]) -> Result<RunEvent, String> {
    let unreadable = |e: serde_json::Error| {
        format!("run {run_id}: an event in the run store is not readable ({e})")
    };
    let kind = serde_json::from_slice::<KindAhead>(text).map_err(unreadable)?;
    let (sequence, time, kind) = match &*kind.e.kind {
        "partial_result" => {
            let stored: StoredEvent<StoredPartial> =
                serde_json::from_slice(text).map_err(unreadable)?;
            (stored.s, stored.t, partial_from_stored(stored.e))
        }
        "progress" => {
            let stored: StoredEvent<StoredProgress> =
                serde_json::from_slice(text).map_err(unreadable)?;
            (stored.s, stored.t, progress_from_stored(stored.e))
        }
        _ => {
            let stored: StoredEvent<StoredKind> =
                serde_json::from_slice(text).map_err(unreadable)?;
            (stored.s, stored.t, kind_from_stored(stored.e))
        }
    };
    Ok(RunEvent::new(
        Arc::clone(run_id),
        sequence,
        from_unix_nanos(time),
        kind,
    ))
}

fn progress_from_stored(stored: StoredProgress<'_>) -> EventKind {
    EventKind::Progress {
        eta_seconds: stored.eta,
        call: Arc::new(call_from_stored(stored.call)),
        update: ProgressUpdate {
            fraction: stored.progress,
            status: stored.status.map(Cow::into_owned),
            data: stored.data.into_owned(),
        },
    }
}

fn partial_from_stored(stored: StoredPartial<'_>) -> EventKind {
    EventKind::PartialResult {
        call: Arc::new(call_from_stored(stored.call)),
        output: HeldPartial::new(PartialOutput {
            key: stored.key.into_owned(),
            value: stored.value.into_owned(),
            append: stored.append,
        }),
    }
}

fn kind_from_stored(stored: StoredKind<'_>) -> EventKind {
    match stored {
        StoredKind::Started {
            tool,
            arguments,
            prompt,
            model,
            tools,
            max_steps,
            min_progress_interval_ns,
            heartbeat_interval_ns,
            continue_without_caller,
            deadline_ns,
            labels,
            idempotency_key,
            input_timeout_ns,
        } => EventKind::Started(Box::new(RunStarted {
            kind: RunKind::from_tool_name(&tool),
            arguments,
            prompt,
            model,
            tools,
            max_steps,
            options: RunOptions {
                min_progress_interval: min_progress_interval_ns.map(Duration::from_nanos),
                on_disconnect: if continue_without_caller {
                    OnDisconnect::Continue
                } else {
                    OnDisconnect::Cancel
                },
                heartbeat_interval: heartbeat_interval_ns.map(Duration::from_nanos),
                input_timeout: input_timeout_ns.map(Duration::from_nanos),
            },
            deadline: deadline_ns.map(Duration::from_nanos),
            // Kept in the run's record (its `principal` field), not in its events.
            owner: None,
            labels,
            idempotency_key,
        })),
        StoredKind::Progress(progress) => progress_from_stored(progress),
        StoredKind::Result { value } => EventKind::Result(value),
        StoredKind::ToolCallStarted { call, arguments } => EventKind::ToolCallStarted {
            call: call_from_stored(call),
            arguments: match arguments {
                StoredArguments::Object(object) => CallArguments::Object(object),
                StoredArguments::Raw(text) => CallArguments::Raw(text),
            },
        },
        StoredKind::ToolCallFinished { call, outcome } => EventKind::ToolCallFinished {
            call: call_from_stored(call),
            outcome: match outcome {
                StoredOutcome::Ok(value) => Ok(value),
                StoredOutcome::Error(message) => Err(message),
            },
        },
        StoredKind::Message { text } => EventKind::Message(text),
        StoredKind::InputRequested {
            id,
            call,
            prompt,
            schema,
            ask,
            data,
            expire_ns,
        } => EventKind::InputRequested(Arc::new(InputRequest {
            request_id: Arc::from(id),
            call: Arc::new(call_from_stored(call)),
            prompt,
            schema,
            kind: if ask == "approval" {
                InputKind::Approval
            } else {
                InputKind::Input
            },
            data,
            expire_time: expire_ns.map(from_unix_nanos),
        })),
        StoredKind::InputResolved { id, outcome, value } => EventKind::InputResolved {
            request_id: Arc::from(id),
            outcome: match (outcome.as_str(), value) {
                ("answered", value) => InputOutcome::Answered(value.unwrap_or(Value::Null)),
                ("declined", _) => InputOutcome::Declined,
                ("expired", _) => InputOutcome::Expired,
                _ => InputOutcome::Cancelled,
            },
        },
        StoredKind::PartialResult(partial) => partial_from_stored(partial),
    }
}

/// A run's error as stored: the same variant (so every replica ends its streams with the same
/// status code and message).
#[derive(Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
enum StoredError {
    UnknownTool {
        name: String,
    },
    InvalidArguments {
        message: String,
    },
    Tool {
        tool: String,
        kind: StoredToolError,
        message: String,
        /// Set when the run broke its limit of live calls (the kind is then `out_of_range`):
        /// the limit. Earlier releases read the rest as a tool's error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        live_call_limit: Option<usize>,
    },
    Panicked {
        what: String,
        message: String,
    },
    DeadlineExceeded {
        limit_ns: u64,
    },
    Busy {
        limit: usize,
    },
    ShuttingDown,
    Interrupted,
    Cancelled,
    CancelRequested,
    CursorPastEnd {
        after: u64,
        last: u64,
    },
    UnknownRun {
        run_id: String,
    },
    FailedPrecondition {
        message: String,
    },
    UnknownInputRequest {
        request_id: String,
    },
    Unavailable {
        message: String,
    },
    StoreUnavailable {
        store: String,
        reason: String,
    },
    ReplicaLost {
        replica: String,
    },
    PrincipalBusy {
        principal: String,
        limit: usize,
    },
    PermissionDenied {
        message: String,
    },
    Internal {
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredToolError {
    Failed,
    Internal,
    InvalidArguments,
    PermissionDenied,
    NotFound,
    Unavailable,
    DeadlineExceeded,
    OutOfRange,
}

pub(super) fn encode_error(error: &RunError) -> String {
    let stored = match error.clone() {
        RunError::UnknownTool(name) => StoredError::UnknownTool { name },
        RunError::InvalidArguments(message) => StoredError::InvalidArguments { message },
        RunError::TooManyLiveCalls { tool, limit } => StoredError::Tool {
            tool,
            kind: StoredToolError::OutOfRange,
            message: too_many_live_calls(&limit),
            live_call_limit: Some(limit),
        },
        RunError::Tool { tool, error } => {
            let (kind, message) = match error {
                ToolError::Failed(m) => (StoredToolError::Failed, m),
                ToolError::Internal(m) => (StoredToolError::Internal, m),
                ToolError::InvalidArguments(m) => (StoredToolError::InvalidArguments, m),
                ToolError::PermissionDenied(m) => (StoredToolError::PermissionDenied, m),
                ToolError::NotFound(m) => (StoredToolError::NotFound, m),
                ToolError::Unavailable(m) => (StoredToolError::Unavailable, m),
                ToolError::DeadlineExceeded(m) => (StoredToolError::DeadlineExceeded, m),
                ToolError::OutOfRange(m) => (StoredToolError::OutOfRange, m),
            };
            StoredError::Tool {
                tool,
                kind,
                message,
                live_call_limit: None,
            }
        }
        RunError::Panicked { what, message } => StoredError::Panicked { what, message },
        RunError::DeadlineExceeded(limit) => StoredError::DeadlineExceeded {
            limit_ns: nanos(limit),
        },
        RunError::Busy { limit } => StoredError::Busy { limit },
        RunError::ShuttingDown => StoredError::ShuttingDown,
        RunError::Interrupted => StoredError::Interrupted,
        RunError::Cancelled => StoredError::Cancelled,
        RunError::CancelRequested => StoredError::CancelRequested,
        RunError::CursorPastEnd { after, last } => StoredError::CursorPastEnd { after, last },
        RunError::UnknownRun(run_id) => StoredError::UnknownRun { run_id },
        RunError::FailedPrecondition(message) => StoredError::FailedPrecondition { message },
        RunError::UnknownInputRequest(request_id) => {
            StoredError::UnknownInputRequest { request_id }
        }
        RunError::Unavailable(message) => StoredError::Unavailable { message },
        RunError::StoreUnavailable { store, reason } => {
            StoredError::StoreUnavailable { store, reason }
        }
        RunError::ReplicaLost { replica } => StoredError::ReplicaLost { replica },
        RunError::OwnerBusy { owner, limit } => StoredError::PrincipalBusy {
            principal: owner,
            limit,
        },
        RunError::PermissionDenied(message) => StoredError::PermissionDenied { message },
        RunError::Internal(message) => StoredError::Internal { message },
    };
    serde_json::to_string(&stored).unwrap_or_else(|_| String::from(r#"{"error":"cancelled"}"#))
}

pub(super) fn decode_error(text: &str) -> RunError {
    let Ok(stored) = serde_json::from_str::<StoredError>(text) else {
        return RunError::Internal(format!(
            "the run ended with an error this replica cannot read: {text}"
        ));
    };
    match stored {
        StoredError::UnknownTool { name } => RunError::UnknownTool(name),
        StoredError::InvalidArguments { message } => RunError::InvalidArguments(message),
        StoredError::Tool {
            tool,
            live_call_limit: Some(limit),
            ..
        } => RunError::TooManyLiveCalls { tool, limit },
        StoredError::Tool {
            tool,
            kind,
            message,
            live_call_limit: None,
        } => RunError::Tool {
            tool,
            error: match kind {
                StoredToolError::Failed => ToolError::Failed(message),
                StoredToolError::Internal => ToolError::Internal(message),
                StoredToolError::InvalidArguments => ToolError::InvalidArguments(message),
                StoredToolError::PermissionDenied => ToolError::PermissionDenied(message),
                StoredToolError::NotFound => ToolError::NotFound(message),
                StoredToolError::Unavailable => ToolError::Unavailable(message),
                StoredToolError::DeadlineExceeded => ToolError::DeadlineExceeded(message),
                StoredToolError::OutOfRange => ToolError::OutOfRange(message),
            },
        },
        StoredError::Panicked { what, message } => RunError::Panicked { what, message },
        StoredError::DeadlineExceeded { limit_ns } => {
            RunError::DeadlineExceeded(Duration::from_nanos(limit_ns))
        }
        StoredError::Busy { limit } => RunError::Busy { limit },
        StoredError::ShuttingDown => RunError::ShuttingDown,
        StoredError::Interrupted => RunError::Interrupted,
        StoredError::Cancelled => RunError::Cancelled,
        StoredError::CancelRequested => RunError::CancelRequested,
        StoredError::CursorPastEnd { after, last } => RunError::CursorPastEnd { after, last },
        StoredError::UnknownRun { run_id } => RunError::UnknownRun(run_id),
        StoredError::FailedPrecondition { message } => RunError::FailedPrecondition(message),
        StoredError::UnknownInputRequest { request_id } => {
            RunError::UnknownInputRequest(request_id)
        }
        StoredError::Unavailable { message } => RunError::Unavailable(message),
        StoredError::StoreUnavailable { store, reason } => {
            RunError::StoreUnavailable { store, reason }
        }
        StoredError::ReplicaLost { replica } => RunError::ReplicaLost { replica },
        StoredError::PrincipalBusy { principal, limit } => RunError::OwnerBusy {
            owner: principal,
            limit,
        },
        StoredError::PermissionDenied { message } => RunError::PermissionDenied(message),
        StoredError::Internal { message } => RunError::Internal(message),
    }
}

/// The `state` field of a run's record.
pub(super) fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Running | RunState::InputRequired => "running",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
    }
}

fn state_from_name(name: &str) -> Option<RunState> {
    Some(match name {
        "running" => RunState::Running,
        "succeeded" => RunState::Succeeded,
        "failed" => RunState::Failed,
        "cancelled" => RunState::Cancelled,
        _ => return None,
    })
}

/// A run's record as read from its hash.
#[derive(Debug, Clone)]
pub(super) struct StoredRecord {
    /// From the fields `tool` (empty for an agent run) and `agent` (`1` for an agent run).
    pub(super) kind: RunKind,
    pub(super) create_ns: u64,
    pub(super) owner: String,
    /// Whom the run belongs to (the hash field `principal`); empty for no one.
    pub(super) belongs_to: String,
    pub(super) state: RunState,
    pub(super) end_ns: Option<u64>,
    pub(super) last_sequence: u64,
    pub(super) started: String,
    /// The latest progress of each call (stored events).
    pub(super) progress: Vec<String>,
    /// The open input requests (stored `input_requested` events).
    pub(super) inputs: Vec<String>,
    pub(super) result: Option<String>,
    pub(super) error: Option<String>,
}

impl StoredRecord {
    /// The record in `fields`; `None` for a missing (or unreadable) record.
    pub(super) fn parse(mut fields: HashMap<String, String>) -> Option<StoredRecord> {
        let number = |fields: &HashMap<String, String>, name: &str| {
            fields.get(name).and_then(|value| value.parse::<u64>().ok())
        };
        let state = state_from_name(fields.get("state")?)?;
        let progress = fields
            .iter()
            .filter(|(name, _)| name.starts_with(PROGRESS_FIELD))
            .map(|(_, value)| value.clone())
            .collect();
        let inputs = fields
            .iter()
            .filter(|(name, _)| name.starts_with(INPUT_FIELD))
            .map(|(_, value)| value.clone())
            .collect();
        let kind = if fields.get("agent").is_some_and(|agent| agent == "1") {
            RunKind::Agent
        } else {
            RunKind::from_tool_name(fields.get("tool").map_or("", String::as_str))
        };
        Some(StoredRecord {
            inputs,
            kind,
            create_ns: number(&fields, "create_ns").unwrap_or(0),
            end_ns: number(&fields, "end_ns"),
            last_sequence: number(&fields, "last_sequence").unwrap_or(0),
            owner: fields.remove("owner").unwrap_or_default(),
            belongs_to: fields.remove("principal").unwrap_or_default(),
            started: fields.remove("started").unwrap_or_default(),
            result: fields.remove("result"),
            error: fields.remove("error"),
            state,
            progress,
        })
    }

    /// The ids of the run's open input requests, oldest first (an unreadable one is left out).
    pub(super) fn open_requests(&self, run_id: &str) -> Vec<Arc<str>> {
        let run_id: Arc<str> = Arc::from(run_id);
        let mut open: Vec<(u64, Arc<str>)> = self
            .inputs
            .iter()
            .filter_map(|text| decode_event(&run_id, text).ok())
            .filter_map(|event| match event.kind {
                EventKind::InputRequested(request) => {
                    Some((event.sequence, Arc::clone(&request.request_id)))
                }
                _ => None,
            })
            .collect();
        open.sort();
        open.into_iter().map(|(_, id)| id).collect()
    }

    /// The run as a resource.
    pub(super) fn snapshot(&self, run_id: &str) -> RunSnapshot {
        let run_id: Arc<str> = Arc::from(run_id);
        let mut progress: Vec<Arc<RunEvent>> = self
            .progress
            .iter()
            .filter_map(|text| decode_event(&run_id, text).ok())
            .filter(|event| event.kind.is_progress())
            .map(Arc::new)
            .collect();
        // Finished sub-tasks are folded into their parents, as in the executing replica's log.
        progress.retain(|event| match &event.kind {
            EventKind::Progress { call, update, .. } => {
                call.call_id.is_empty() || update.fraction.is_none_or(|fraction| fraction < 1.0)
            }
            _ => false,
        });
        // The top level first, then the calls in the order they last reported: the last
        // SNAPSHOT_CALLS of them.
        progress.sort_by_key(|event| match &event.kind {
            EventKind::Progress { call, .. } => (!call.call_id.is_empty(), event.sequence),
            _ => (true, event.sequence),
        });
        let calls = progress
            .iter()
            .filter(|event| {
                event
                    .kind
                    .call()
                    .is_some_and(|call| !call.call_id.is_empty())
            })
            .count();
        let first_call = progress.len() - calls;
        progress.drain(first_call..first_call + calls.saturating_sub(SNAPSHOT_CALLS));
        // What the run was called with is in its started event.
        let started = decode_event(&run_id, &self.started).ok();
        let called = called_with(started.as_ref());
        let mut pending_inputs: Vec<Arc<RunEvent>> = if self.state == RunState::Running {
            self.inputs
                .iter()
                .filter_map(|text| decode_event(&run_id, text).ok())
                .map(Arc::new)
                .collect()
        } else {
            Vec::new()
        };
        pending_inputs.sort_by_key(|event| event.sequence);
        RunSnapshot {
            state: if pending_inputs.is_empty() {
                self.state
            } else {
                RunState::InputRequired
            },
            pending_inputs,
            run_id,
            kind: self.kind.clone(),
            arguments: called.arguments,
            prompt: called.prompt,
            labels: called.labels,
            idempotency_key: called.idempotency_key,
            create_time: from_unix_nanos(self.create_ns),
            end_time: self.end_ns.map(from_unix_nanos),
            last_sequence: self.last_sequence,
            progress,
            result: self
                .result
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
            error: self.error.as_deref().map(decode_error),
            owner: (!self.belongs_to.is_empty()).then(|| Owner::new(self.belongs_to.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(kind: EventKind) -> EventKind {
        let run_id: Arc<str> = Arc::from("r");
        let event = RunEvent::new(Arc::clone(&run_id), 7, SystemTime::now(), kind);
        let text = encode_event(&event).expect("stored");
        let back = decode_event(&run_id, &text).expect("readable");
        assert_eq!(back.sequence, 7);
        assert_eq!(back.timestamp, event.timestamp);
        back.kind
    }

    #[test]
    fn events_survive_the_store() {
        let started = RunStarted {
            arguments: Some(json!({"count": 3})),
            options: RunOptions {
                min_progress_interval: Some(Duration::from_millis(5)),
                on_disconnect: OnDisconnect::Continue,
                heartbeat_interval: None,
                input_timeout: Some(Duration::from_secs(2)),
            },
            deadline: Some(Duration::from_secs(3)),
            ..RunStarted::new(RunKind::tool_run("ticks"))
        };
        let EventKind::Started(back) = round_trip(EventKind::Started(Box::new(started.clone())))
        else {
            panic!("not started");
        };
        assert_eq!(back.kind, RunKind::tool_run("ticks"));
        assert_eq!(back.arguments, Some(json!({"count": 3})));
        let EventKind::Started(agent) = round_trip(EventKind::Started(Box::new(RunStarted {
            prompt: "Hash Cargo.toml".into(),
            ..RunStarted::new(RunKind::Agent)
        }))) else {
            panic!("not started");
        };
        assert_eq!(agent.kind, RunKind::Agent);
        assert_eq!(
            (agent.arguments, agent.prompt.as_str()),
            (None, "Hash Cargo.toml")
        );
        assert_eq!(back.options, started.options);
        assert_eq!(back.deadline, started.deadline);

        let call = CallTag {
            call_id: "c1".into(),
            tool: "checksum".into(),
            parent_call_id: "c0".into(),
        };
        let mut data = Map::new();
        data.insert("bytes".into(), json!(12));
        let EventKind::Progress {
            call: c,
            update,
            eta_seconds,
        } = round_trip(EventKind::Progress {
            call: Arc::new(call.clone()),
            update: ProgressUpdate {
                fraction: Some(0.5),
                status: Some("half".into()),
                data,
            },
            eta_seconds: Some(2.5),
        })
        else {
            panic!("not progress");
        };
        assert_eq!(*c, call);
        assert_eq!(eta_seconds, Some(2.5));
        assert_eq!(update.fraction, Some(0.5));
        assert_eq!(update.data["bytes"], json!(12));

        let EventKind::ToolCallFinished { outcome, .. } = round_trip(EventKind::ToolCallFinished {
            call,
            outcome: Ok(Value::Null),
        }) else {
            panic!("not finished");
        };
        assert_eq!(outcome, Ok(Value::Null));
        assert!(
            encode_event(&RunEvent::new(
                "r".into(),
                0,
                SystemTime::now(),
                EventKind::Heartbeat { last_sequence: 1 }
            ))
            .is_none()
        );
    }

    #[test]
    fn partial_results_survive_the_store() {
        for (call, output) in [
            (
                CallTag::top(),
                PartialOutput {
                    key: String::new(),
                    value: json!({"best": 0.9}),
                    append: false,
                },
            ),
            (
                CallTag {
                    call_id: "c1/2".into(),
                    tool: "a.txt".into(),
                    parent_call_id: "c1".into(),
                },
                PartialOutput {
                    key: "files".into(),
                    value: json!(null),
                    append: true,
                },
            ),
        ] {
            let EventKind::PartialResult {
                call: back_call,
                output: back,
            } = round_trip(EventKind::PartialResult {
                call: Arc::new(call.clone()),
                output: HeldPartial::new(output.clone()),
            })
            else {
                panic!("not a partial result");
            };
            assert_eq!((*back_call).clone(), call);
            assert_eq!(back.to_output(), output);
        }
    }

    #[test]
    fn started_events_and_records_read_as_earlier_releases_wrote_them() {
        // Replicas of two releases share a store during an upgrade: what one writes, the other
        // reads, and writes back byte for byte.
        let run_id: Arc<str> = Arc::from("r");
        for (text, kind) in [
            (
                r#"{"s":1,"t":5,"e":{"kind":"started","tool":"ticks","arguments":{"count":3},"max_steps":0,"continue_without_caller":false}}"#,
                RunKind::tool_run("ticks"),
            ),
            (
                r#"{"s":1,"t":5,"e":{"kind":"started","tool":"","prompt":"hi","model":"m","max_steps":4,"continue_without_caller":true}}"#,
                RunKind::Agent,
            ),
        ] {
            let event = decode_event(&run_id, text).expect("readable");
            let EventKind::Started(started) = &event.kind else {
                panic!("not started: {text}");
            };
            assert_eq!(started.kind, kind);
            assert_eq!(encode_event(&event).as_deref(), Some(text));
        }
        let record = |tool: &str, agent: &str| {
            let fields = [("state", "running"), ("tool", tool), ("agent", agent)];
            StoredRecord::parse(
                fields
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value.to_owned()))
                    .collect(),
            )
            .expect("a record")
            .kind
        };
        assert_eq!(record("ticks", "0"), RunKind::tool_run("ticks"));
        assert_eq!(record("", "1"), RunKind::Agent);
    }

    #[test]
    fn progress_and_partial_results_read_as_earlier_releases_wrote_them() {
        // Written from the event borrowed and read ahead by their kind now: the stored form is
        // the one every release wrote, byte for byte.
        let run_id: Arc<str> = Arc::from("r");
        for text in [
            r#"{"s":9,"t":5,"e":{"kind":"partial_result","key":"items","value":{"item":9},"append":true}}"#,
            r#"{"s":9,"t":5,"e":{"kind":"partial_result","call":{"id":"c1/2","tool":"a.txt","parent":"c1"},"value":[1,"two"]}}"#,
            r#"{"s":9,"t":5,"e":{"kind":"progress","progress":0.5,"status":"half","data":{"bytes":12},"eta":2.5}}"#,
            r#"{"s":9,"t":5,"e":{"kind":"progress","call":{"id":"c1","tool":"checksum"}}}"#,
            r#"{"s":9,"t":5,"e":{"kind":"message","text":"hi"}}"#,
        ] {
            let event = decode_event(&run_id, text).expect("readable");
            assert_eq!(event.sequence, 9);
            assert_eq!(encode_event(&event).as_deref(), Some(text));
        }
        // The kind need not come first (another writer's JSON): read the same.
        let late = r#"{"t":5,"e":{"value":{"item":9},"key":"items","append":true,"kind":"partial_result"},"s":9}"#;
        let EventKind::PartialResult { output, .. } = decode_event(&run_id, late).unwrap().kind
        else {
            panic!("not a partial result");
        };
        assert_eq!(
            output.to_output(),
            PartialOutput {
                key: "items".into(),
                value: json!({"item": 9}),
                append: true,
            }
        );
        assert!(decode_event(&run_id, r#"{"s":9,"t":5,"e":{"kind":"partial_result"}}"#).is_err());
    }

    #[test]
    fn errors_keep_their_variant_and_message() {
        for error in [
            RunError::CancelRequested,
            RunError::Tool {
                tool: "t".into(),
                error: ToolError::PermissionDenied("outside the root".into()),
            },
            RunError::DeadlineExceeded(Duration::from_millis(1500)),
            RunError::ReplicaLost {
                replica: "a-1".into(),
            },
            RunError::TooManyLiveCalls {
                tool: "many".into(),
                limit: 100,
            },
            RunError::OwnerBusy {
                owner: "ann".into(),
                limit: 2,
            },
        ] {
            let back = decode_error(&encode_error(&error));
            assert_eq!(back.to_string(), error.to_string());
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&error)
            );
        }
        assert!(matches!(decode_error("garbage"), RunError::Internal(_)));
    }
}
