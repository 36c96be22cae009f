//! GetRun: a run the caller may see.

use super::{Caller, Operations, given_run_id};
use crate::engine::{RunError, RunSnapshot};

impl Operations {
    /// The run `run_id`. Another principal's run is NOT_FOUND, exactly like an unknown id, so
    /// that ids say nothing about runs one may not see.
    pub async fn get_run(&self, caller: &Caller, run_id: &str) -> Result<RunSnapshot, RunError> {
        let run = self.engine.get_run(given_run_id(run_id)?).await?;
        if !caller.may_see(run.owner.as_ref()) {
            return Err(RunError::UnknownRun(run_id.to_owned()));
        }
        Ok(run)
    }
}
