//! ListRuns: the caller's runs, a page at a time.

use super::{Caller, Operations};
use crate::engine::{RunError, RunFilter, RunPage};

impl Operations {
    /// The runs `filter` selects among those the caller may see (with auth on, its own).
    pub async fn list_runs(
        &self,
        caller: &Caller,
        mut filter: RunFilter,
    ) -> Result<RunPage, RunError> {
        filter.owner = caller.owner();
        self.engine.list_runs(&filter).await
    }
}
