//! RespondToRun: an answer to a run's open input request, from wherever the caller is.

use super::{Caller, Operations};
use crate::engine::{Reply, RunError, RunSnapshot};

impl Operations {
    /// Answers (or declines) the input request `request_id` of a run the caller may see
    /// (another principal's run is NOT_FOUND), on whichever replica runs it, and answers the
    /// run's state then.
    pub async fn respond(
        &self,
        caller: &Caller,
        run_id: &str,
        request_id: &str,
        reply: Reply,
    ) -> Result<RunSnapshot, RunError> {
        self.get_run(caller, run_id).await?;
        self.engine.respond(run_id, request_id, reply).await
    }
}
