//! What the engine tells whoever watches it (the server's metrics and traces): when a run starts
//! and ends, and how many events runs produced and streams delivered or coalesced.
//!
//! Nothing here is called per event. A run reports its count of events once, as it ends; a stream
//! (a reader of a run's log) counts what it delivered and skipped in plain fields of its own and
//! reports them once, when it is dropped. So watching costs the hot path nothing measurable.

use std::time::Duration;

use super::RunError;
use super::kind::RunKind;
use super::runs::RunSnapshot;

/// Watches the engine's runs. Every method has an empty default, so an observer implements only
/// what it wants.
pub trait RunObserver: Send + Sync + 'static {
    /// A run of `kind` started.
    fn run_started(&self, kind: &RunKind) {
        let _ = kind;
    }

    /// A run is ending, after `elapsed`, with `outcome`; called from inside the run's span, just
    /// before the run's end is visible to its streams.
    fn run_finished(&self, kind: &RunKind, outcome: Result<(), &RunError>, elapsed: Duration) {
        let _ = (kind, outcome, elapsed);
    }

    /// A run that is ending produced `count` events (its last sequence).
    fn events_produced(&self, count: u64) {
        let _ = count;
    }

    /// Whether [`run_ended`](Self::run_ended) wants to be called (a snapshot of each run is
    /// taken for it only then).
    fn watches_run_ends(&self) -> bool {
        false
    }

    /// A run ended, and its end is visible to everyone (its streams, GetRun on every replica):
    /// the run as GetRun answers it now. Called once per run, from the run's task: an observer
    /// must not wait here (webhooks queue the run and return).
    fn run_ended(&self, run: &RunSnapshot) {
        let _ = run;
    }

    /// A run began waiting for input (its first open input request), or stopped waiting (its
    /// last one was resolved): `waiting` says which.
    fn input_waiting(&self, waiting: bool) {
        let _ = waiting;
    }

    /// Whether [`run_waiting`](Self::run_waiting) wants to be called (a snapshot of the run is
    /// taken for it only then).
    fn watches_run_waits(&self) -> bool {
        false
    }

    /// A run began waiting for input: its first open input request was just made, and `run` is
    /// the run as GetRun answers it now (INPUT_REQUIRED, the request in `pending_inputs`).
    /// Called from the asking tool's task, outside the run's lock: an observer must not wait
    /// here (webhooks queue the run and return).
    fn run_waiting(&self, run: &RunSnapshot) {
        let _ = run;
    }

    /// An input request was resolved (answered, declined, expired or cancelled) `waited` after
    /// it was made.
    fn input_resolved(&self, waited: Duration) {
        let _ = waited;
    }

    /// A stream of a run ended, having delivered `delivered` of the run's events and skipped
    /// `coalesced` progress events that newer progress of the same call replaced.
    fn stream_ended(&self, delivered: u64, coalesced: u64) {
        let _ = (delivered, coalesced);
    }
}

/// Watches nothing: the engine's observer unless one is given.
pub struct NoObserver;

impl RunObserver for NoObserver {}
