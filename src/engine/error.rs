//! Why a run could not start, or how it ended when it did not end with a result.

use std::time::Duration;

use crate::registry::LookupError;
use crate::tools::ToolError;

/// How a run failed. Each variant is one status code of the contract (`crate::status` maps them,
/// in one place, and adds what the configuration calls a limit to the message).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// No tool has that name.
    #[error("unknown tool {0:?}: no tool of this server has that name")]
    UnknownTool(String),
    /// The arguments were refused before the run started.
    #[error("{0}")]
    InvalidArguments(String),
    /// The tool ended with an error.
    #[error("tool {tool:?} failed: {error}")]
    Tool {
        /// The tool.
        tool: String,
        /// Its error.
        error: ToolError,
    },
    /// The tool (or agent) panicked; the server goes on.
    #[error("{what} crashed: {message}")]
    Panicked {
        /// What panicked: `tool "x"` or `agent`.
        what: String,
        /// The panic's message.
        message: String,
    },
    /// The client's deadline passed.
    #[error("the run did not finish within its deadline of {0:?}")]
    DeadlineExceeded(Duration),
    /// The limit on concurrent runs is reached.
    #[error("the server is running its limit of {limit} concurrent runs; retry later")]
    Busy {
        /// The limit.
        limit: usize,
    },
    /// The run's owner has its limit of runs in progress ([`super::Limits::max_runs_per_owner`]).
    #[error(
        "{owner:?} has {limit} runs in progress, the most one owner may have; wait for one to end"
    )]
    OwnerBusy {
        /// The owner, by name.
        owner: String,
        /// The limit.
        limit: usize,
    },
    /// The run had more tool calls and sub-tasks in progress at once than
    /// [`super::Limits::max_live_calls_per_run`] allows (its tool broke the limit).
    #[error("tool {tool:?} failed: {}", too_many_live_calls(.limit))]
    TooManyLiveCalls {
        /// The tool of the run (`agent` for an agent run).
        tool: String,
        /// The limit.
        limit: usize,
    },
    /// The caller may not do this (a tool its token does not list).
    #[error("{0}")]
    PermissionDenied(String),
    /// The server is draining and takes no new runs.
    #[error("the server is shutting down and takes no new runs; retry on another instance")]
    ShuttingDown,
    /// The server shut down before the run finished.
    #[error("the server shut down before the run finished")]
    Interrupted,
    /// The client went away.
    #[error("the run was cancelled by the client")]
    Cancelled,
    /// Someone cancelled it by its id (not its caller).
    #[error("the run was cancelled on request")]
    CancelRequested,
    /// A watcher asked for events after a sequence the run has not reached.
    #[error(
        "sequence {after} is past the run's last event ({last}); read after the last sequence \
         you saw"
    )]
    CursorPastEnd {
        /// The cursor given.
        after: u64,
        /// The run's last sequence.
        last: u64,
    },
    /// No run has that id (never existed, or expired).
    #[error(
        "unknown run {0:?}: no run has this id, or it ended longer ago than the server keeps runs"
    )]
    UnknownRun(String),
    /// The run has no input request with that id.
    #[error(
        "the run has no input request {0:?}; take the id from the run's input_requested event or \
         its pending_inputs"
    )]
    UnknownInputRequest(String),
    /// A precondition of the call is not met (for example: no model configured).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Something the run depends on cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The run store (shared by the replicas) cannot be reached.
    #[error(
        "the run store {store} cannot be reached ({reason}); retry later or on another replica"
    )]
    StoreUnavailable {
        /// The store, as configured (without a password).
        store: String,
        /// What went wrong.
        reason: String,
    },
    /// The replica executing the run stopped renewing its lease: it crashed, was killed or lost
    /// the run store. How the run would have ended is unknown.
    #[error(
        "the replica {replica:?} running this run stopped renewing its lease (it crashed, was \
         killed or lost the run store); the run's outcome is unknown: start it again"
    )]
    ReplicaLost {
        /// The lost replica's id.
        replica: String,
    },
    /// Something broke inside the server or in what it talks to.
    #[error("{0}")]
    Internal(String),
}

/// What [`RunError::TooManyLiveCalls`] says after the tool's name.
pub(crate) fn too_many_live_calls(limit: &usize) -> String {
    format!(
        "the run has {limit} sub-tasks and tool calls in progress at once, the most a run may \
         have; finish sub-tasks before opening more"
    )
}

impl RunError {
    /// Whether the run was cancelled (by its caller, CancelRun or shutdown) rather than failing.
    pub fn is_cancellation(&self) -> bool {
        matches!(
            self,
            RunError::Cancelled | RunError::CancelRequested | RunError::Interrupted
        )
    }
}

impl From<LookupError> for RunError {
    fn from(error: LookupError) -> Self {
        match error {
            LookupError::UnknownTool(name) => RunError::UnknownTool(name),
            invalid @ LookupError::InvalidArguments { .. } => {
                RunError::InvalidArguments(invalid.to_string())
            }
        }
    }
}
