//! The limits the engine runs under; the configuration builds them.

use std::time::Duration;

/// Limits of the engine's runs (the listener's are `crate::config::HttpConfig`'s).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Runs in progress at once.
    pub max_concurrent_runs: usize,
    /// Events queued per run for a client that reads slower than the run produces: this many
    /// progress events before progress is coalesced, and this many other events before their
    /// producer waits.
    pub event_buffer: usize,
    /// How long running runs may finish after a shutdown signal.
    pub grace_period: Duration,
    /// Largest message accepted or sent.
    pub max_message_bytes: usize,
    /// How long a finished run stays available to GetRun and WatchRun.
    pub retention: Duration,
    /// The most finished runs kept; beyond it the oldest finished are forgotten first.
    pub max_runs: usize,
    /// The most events one run's log holds; past it the oldest are evicted (readers that needed
    /// them get a `gap` event).
    pub max_events_per_run: usize,
    /// The most tool calls and sub-tasks one run has in progress at once (finished ones are
    /// folded into their parents and do not count); past it the run fails with an error naming
    /// the limit.
    pub max_live_calls_per_run: usize,
    /// Runs in progress at once per owner (see [`super::Owner`]); `None`: no limit besides
    /// `max_concurrent_runs`. Runs of no owner are never counted.
    pub max_runs_per_owner: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_runs: 16_384,
            event_buffer: 64,
            grace_period: Duration::from_secs(30),
            max_message_bytes: 4 * 1024 * 1024,
            retention: Duration::from_secs(600),
            max_runs: 10_000,
            max_events_per_run: 10_000,
            max_live_calls_per_run: 10_000,
            max_runs_per_owner: None,
        }
    }
}
