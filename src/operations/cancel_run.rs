//! CancelRun: a run the caller may see, cancelled from wherever it runs.

use super::{Caller, Operations};
use crate::engine::{RunError, RunSnapshot};

impl Operations {
    /// Cancels the run (on whichever replica runs it) and answers its state.
    pub async fn cancel_run(&self, caller: &Caller, run_id: &str) -> Result<RunSnapshot, RunError> {
        self.get_run(caller, run_id).await?;
        self.engine.cancel_run(run_id).await
    }
}
