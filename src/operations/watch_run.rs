//! WatchRun: a run's events, from where the watcher asks.

use super::{Caller, Operations};
use crate::engine::{EventStream, ReadFrom, RunError, RunOptions};

/// Which run to watch, from where, and how.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// The run's id.
    pub run_id: String,
    /// Where its events start.
    pub from: ReadFrom,
    /// The watcher's delivery options (coalescing, heartbeats); a watcher never affects the run.
    pub options: RunOptions,
}

impl Operations {
    /// The events of a run the caller may see (another principal's run is NOT_FOUND).
    pub async fn watch_run(
        &self,
        caller: &Caller,
        request: &WatchRequest,
    ) -> Result<EventStream, RunError> {
        // A run's owner never changes, so checking first is as good as checking together.
        self.get_run(caller, &request.run_id).await?;
        self.engine
            .watch_run(&request.run_id, request.from, &request.options)
            .await
    }
}
