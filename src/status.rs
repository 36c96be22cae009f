//! Domain errors as the contract's status codes: the one mapping every face uses. gRPC sends the
//! status as is; HTTP derives its status line from the code (`src/web/error.rs`); a `Run` carries
//! the code and message of the error it ended with; the metrics count runs by it.

use tonic::Status;

use crate::engine::RunError;
use crate::tools::ToolError;

/// The status a failed operation or run answers with: its code, and its message as written.
pub fn from_run_error(error: RunError) -> Status {
    let message = error.to_string();
    match error {
        RunError::UnknownTool(_) | RunError::UnknownRun(_) | RunError::UnknownInputRequest(_) => {
            Status::not_found(message)
        }
        RunError::CursorPastEnd { .. } => Status::out_of_range(message),
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
        RunError::Busy { .. } | RunError::OwnerBusy { .. } => Status::resource_exhausted(message),
        RunError::PermissionDenied(_) => Status::permission_denied(message),
        RunError::ShuttingDown
        | RunError::Interrupted
        | RunError::Unavailable(_)
        | RunError::StoreUnavailable { .. }
        | RunError::ReplicaLost { .. } => Status::unavailable(message),
        RunError::Cancelled | RunError::CancelRequested => Status::cancelled(message),
        RunError::FailedPrecondition(_) => Status::failed_precondition(message),
    }
}
