//! Domain errors as the contract's status codes: the one mapping every face uses. gRPC sends the
//! status as is; HTTP derives its status line from the code (`src/web/error.rs`); a `Run` carries
//! the code and message of the error it ended with; the metrics count runs by it.

use tonic::Status;

use crate::engine::RunError;
use crate::tools::ToolError;

/// The status a failed operation or run answers with: its code, and its message as written,
/// except where the contract's or the configuration's words help the caller act: a limit is
/// named by the key that sets it, a request by its RPC or field (the engine knows neither).
pub fn from_run_error(error: RunError) -> Status {
    let message = error.to_string();
    match error {
        RunError::UnknownTool(name) => Status::not_found(format!(
            "unknown tool {name:?}; list the tools with `toolstream tools` or ListTools"
        )),
        RunError::CancelRequested => {
            Status::cancelled("the run was cancelled through CancelRun".to_owned())
        }
        RunError::CursorPastEnd { after, last } => Status::out_of_range(format!(
            "after_sequence {after} is past the run's last event ({last}); pass the last \
             sequence you saw"
        )),
        RunError::OwnerBusy { owner, limit } => Status::resource_exhausted(format!(
            "{owner:?} has {limit} runs in progress, the most [auth] max_runs_per_principal \
             allows; wait for one to end"
        )),
        RunError::TooManyLiveCalls { tool, limit } => Status::out_of_range(format!(
            "tool {tool:?} failed: the run has {limit} sub-tasks and tool calls in progress at \
             once, the most a run may have ([runs] max_live_calls_per_run); finish sub-tasks \
             before opening more"
        )),
        RunError::UnknownRun(_) | RunError::UnknownInputRequest(_) => Status::not_found(message),
        RunError::InvalidArguments(_) => Status::invalid_argument(message),
        RunError::Tool { error, .. } => match error {
            ToolError::Failed(_) => Status::aborted(message),
            ToolError::Internal(_) => Status::internal(message),
            ToolError::InvalidArguments(_) => Status::invalid_argument(message),
            ToolError::PermissionDenied(_) => Status::permission_denied(message),
            ToolError::NotFound(_) => Status::not_found(message),
            ToolError::Unavailable(_) => Status::unavailable(message),
            ToolError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ToolError::OutOfRange(_) => Status::out_of_range(message),
        },
        RunError::Panicked { .. } | RunError::Internal(_) => Status::internal(message),
        RunError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
        RunError::Busy { .. } => Status::resource_exhausted(message),
        RunError::PermissionDenied(_) => Status::permission_denied(message),
        RunError::ShuttingDown
        | RunError::Interrupted
        | RunError::Unavailable(_)
        | RunError::StoreUnavailable { .. }
        | RunError::ReplicaLost { .. } => Status::unavailable(message),
        RunError::Cancelled => Status::cancelled(message),
        RunError::FailedPrecondition(_) => Status::failed_precondition(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_named_by_the_key_that_sets_it() {
        let owner = from_run_error(RunError::OwnerBusy {
            owner: "ann".into(),
            limit: 2,
        });
        assert_eq!(owner.code(), tonic::Code::ResourceExhausted);
        assert!(
            owner.message().contains("[auth] max_runs_per_principal")
                && owner.message().contains("\"ann\" has 2 runs"),
            "{owner:?}"
        );
        let calls = from_run_error(RunError::TooManyLiveCalls {
            tool: "many".into(),
            limit: 100,
        });
        assert_eq!(calls.code(), tonic::Code::OutOfRange);
        assert!(
            calls.message().contains("[runs] max_live_calls_per_run")
                && calls.message().contains("has 100 sub-tasks"),
            "{calls:?}"
        );
    }

    #[test]
    fn the_contract_s_words_are_the_mapping_s_not_the_engine_s() {
        for (error, engine, face) in [
            (RunError::UnknownTool("x".into()), "", "ListTools"),
            (RunError::CancelRequested, "on request", "CancelRun"),
            (
                RunError::CursorPastEnd { after: 9, last: 3 },
                "sequence 9",
                "after_sequence 9",
            ),
        ] {
            let said = error.to_string();
            assert!(said.contains(engine) && !said.contains(face), "{said}");
            let status = from_run_error(error);
            assert!(status.message().contains(face), "{status:?}");
        }
    }
}
