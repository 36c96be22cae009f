//! The events a run produces, in domain terms (the transport turns them into wire messages).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::tools::ProgressUpdate;

/// One event of a run.
#[derive(Debug, Clone)]
pub struct RunEvent {
    /// The run's id.
    pub run_id: Arc<str>,
    /// Position among the events the run produced, from 1.
    pub sequence: u64,
    /// When the run produced it.
    pub timestamp: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// The run started; always first.
    Started(RunStarted),
    /// Progress of the run, or of a tool call inside an agent run.
    Progress {
        /// Which call reported it; empty at the top level.
        call: CallTag,
        /// The report.
        update: ProgressUpdate,
    },
    /// The run's result; always last.
    Result(Value),
    /// An agent's tool call started.
    ToolCallStarted {
        /// The call.
        call: CallTag,
        /// The arguments the model gave.
        arguments: CallArguments,
    },
    /// An agent's tool call ended.
    ToolCallFinished {
        /// The call.
        call: CallTag,
        /// Its result, or its error in words.
        outcome: Result<Value, String>,
    },
    /// A piece of the model's text.
    Message(String),
}

impl EventKind {
    /// Progress may be coalesced; every other event is delivered.
    pub fn is_progress(&self) -> bool {
        matches!(self, EventKind::Progress { .. })
    }
}

/// Arguments of a tool call as the model sent them.
#[derive(Debug, Clone)]
pub enum CallArguments {
    /// A JSON object.
    Object(serde_json::Map<String, Value>),
    /// Text that is not a JSON object.
    Raw(String),
}

/// Names the tool call an event belongs to. Empty fields mean the top level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallTag {
    /// The call's id.
    pub call_id: Arc<str>,
    /// The tool it calls.
    pub tool: Arc<str>,
    /// The call it was made from, when calls nest.
    pub parent_call_id: Arc<str>,
}

impl CallTag {
    /// The top level of a run: not inside any tool call.
    pub fn top() -> Self {
        CallTag {
            call_id: Arc::from(""),
            tool: Arc::from(""),
            parent_call_id: Arc::from(""),
        }
    }

    /// A call of `tool` with id `call_id` at the top level of the run.
    pub fn call(call_id: impl Into<Arc<str>>, tool: impl Into<Arc<str>>) -> Self {
        CallTag {
            call_id: call_id.into(),
            tool: tool.into(),
            parent_call_id: Arc::from(""),
        }
    }
}

/// Options of a run's delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// At most one progress event per this interval; `None` sends all the client can take.
    pub min_progress_interval: Option<Duration>,
}

/// What runs, with its options resolved: the content of the first event.
#[derive(Debug, Clone, Default)]
pub struct RunStarted {
    /// RunTool: the tool.
    pub tool: String,
    /// RunAgent: the model.
    pub model: String,
    /// RunAgent: the tools the model may call.
    pub tools: Vec<String>,
    /// RunAgent: the most model turns.
    pub max_steps: u32,
    /// Delivery options in force.
    pub options: RunOptions,
    /// The deadline, from the start.
    pub deadline: Option<Duration>,
}
