//! The runs an engine holds: every run in progress and, for a retention time, finished ones, so
//! they can be looked up, listed, watched and cancelled by id from any connection.
//!
//! Finished runs are kept for `retention` and at most `max_runs` of them (the oldest finished go
//! first); after that a run is unknown. Expiry is checked whenever the table is used, so a run
//! past its retention is never served.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::RunError;
use super::event::{EventKind, RunEvent};
use super::log::{RunEnd, RunLog};

/// Runs a page of ListRuns holds unless asked otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest page ListRuns returns.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most calls a snapshot of a run (GetRun, ListRuns) shows the progress of, besides the top
/// level: the live calls that reported last. What a run is sent as stays small however many
/// calls it has; WatchRun from the latest state gives every live call.
pub const SNAPSHOT_CALLS: usize = 20;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Started and not yet ended.
    Running,
    /// Ended with a result.
    Succeeded,
    /// Ended with an error other than cancellation.
    Failed,
    /// Cancelled: by CancelRun, by its caller leaving, or by shutdown.
    Cancelled,
}

/// A run as a resource, at one moment.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    /// The run's id.
    pub run_id: Arc<str>,
    /// Where it stands.
    pub state: RunState,
    /// RunTool: the tool; empty for agent runs.
    pub tool: String,
    /// Whether it is an agent run.
    pub agent: bool,
    /// When it started.
    pub create_time: SystemTime,
    /// When it ended.
    pub end_time: Option<SystemTime>,
    /// The last sequence the run produced.
    pub last_sequence: u64,
    /// The latest progress event of the top level, then of the live calls that reported last
    /// (at most [`SNAPSHOT_CALLS`]), the top level first.
    pub progress: Vec<Arc<RunEvent>>,
    /// The result, when it succeeded.
    pub result: Option<Value>,
    /// The error its streams ended with, when it failed or was cancelled.
    pub error: Option<RunError>,
    /// The principal it belongs to (`None`: started with auth off).
    pub principal: Option<Arc<str>>,
}

/// Which runs ListRuns returns.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs of this tool.
    pub tool: Option<String>,
    /// How many at most (0: the default; capped at [`MAX_PAGE_SIZE`]).
    pub page_size: usize,
    /// Where the previous page ended; empty for the first page.
    pub page_token: String,
    /// Only runs of this principal (`None`: anyone's).
    pub principal: Option<Arc<str>>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<RunSnapshot>,
    /// The token of the next page; empty on the last page.
    pub next_page_token: String,
}

/// Why a run was cancelled, so its error says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CancelReason {
    /// Its caller went away (or cancelled).
    CallerLeft = 1,
    /// CancelRun.
    Requested = 2,
    /// The run store ended it (its replica was declared lost while it could not reach the
    /// store); the error is [`RunRecord::ended_elsewhere`].
    Elsewhere = 3,
}

/// A run in the table.
pub(crate) struct RunRecord {
    pub(crate) tool: String,
    pub(crate) agent: bool,
    pub(crate) principal: Option<Arc<str>>,
    pub(crate) create_time: SystemTime,
    pub(crate) log: Arc<RunLog>,
    pub(crate) cancel: CancellationToken,
    cancel_reason: AtomicU8,
    /// How the run store says the run ended, when it ended there first.
    ended_elsewhere: OnceLock<Box<RunError>>,
    ordinal: u64,
}

impl RunRecord {
    /// Cancels the run, remembering why (the first reason wins).
    pub(crate) fn cancel(&self, reason: CancelReason) {
        let _ = self.cancel_reason.compare_exchange(
            0,
            reason as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.cancel.cancel();
    }

    pub(crate) fn cancel_reason(&self) -> Option<CancelReason> {
        match self.cancel_reason.load(Ordering::Acquire) {
            1 => Some(CancelReason::CallerLeft),
            2 => Some(CancelReason::Requested),
            3 => Some(CancelReason::Elsewhere),
            _ => None,
        }
    }

    /// Ends the run with `error`, the end the run store already holds for it.
    pub(crate) fn end_elsewhere(&self, error: RunError) {
        let _ = self.ended_elsewhere.set(Box::new(error));
        self.cancel(CancelReason::Elsewhere);
    }

    /// The end the run store holds, when the run was ended there (see [`Self::end_elsewhere`]).
    pub(crate) fn ended_elsewhere(&self) -> Option<&RunError> {
        self.ended_elsewhere.get().map(|error| &**error)
    }

    /// The run's id.
    pub(crate) fn run_id(&self) -> &Arc<str> {
        self.log.run_id()
    }

    pub(crate) fn snapshot(&self) -> RunSnapshot {
        let state = self.log.lock();
        let (run_state, result, error) = match &state.end {
            None => (RunState::Running, None, None),
            Some(RunEnd::Succeeded) => {
                let result = state.result().and_then(|event| match &event.kind {
                    EventKind::Result(value) => Some(value.clone()),
                    _ => None,
                });
                (RunState::Succeeded, result, None)
            }
            Some(RunEnd::Failed(error)) => {
                let run_state = if error.is_cancellation() {
                    RunState::Cancelled
                } else {
                    RunState::Failed
                };
                (run_state, None, Some(error.clone()))
            }
        };
        let mut progress = state.latest_progress_of(SNAPSHOT_CALLS);
        // The top level first, then the calls in the order they last reported.
        progress.sort_by_key(|event| match &event.kind {
            EventKind::Progress { call, .. } => (!call.call_id.is_empty(), event.sequence),
            _ => (true, event.sequence),
        });
        RunSnapshot {
            run_id: Arc::clone(self.log.run_id()),
            state: run_state,
            tool: self.tool.clone(),
            agent: self.agent,
            create_time: self.create_time,
            end_time: state.end_time,
            last_sequence: state.last_sequence(),
            progress,
            result,
            error,
            principal: self.principal.clone(),
        }
    }
}

/// Every run the engine holds.
pub(crate) struct RunTable {
    retention: Duration,
    max_runs: usize,
    state: Mutex<TableState>,
}

#[derive(Default)]
struct TableState {
    by_id: HashMap<Arc<str>, Arc<RunRecord>>,
    /// Runs by creation order, for ListRuns (newest first).
    by_ordinal: BTreeMap<u64, Arc<RunRecord>>,
    /// Finished runs in the order they ended: (when, ordinal).
    finished: VecDeque<(Instant, u64)>,
    next_ordinal: u64,
}

impl RunTable {
    pub(crate) fn new(retention: Duration, max_runs: usize) -> Self {
        RunTable {
            retention,
            max_runs,
            state: Mutex::new(TableState {
                next_ordinal: 1,
                ..TableState::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TableState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a new run.
    pub(crate) fn insert(
        &self,
        tool: String,
        agent: bool,
        principal: Option<Arc<str>>,
        log: Arc<RunLog>,
        cancel: CancellationToken,
    ) -> Arc<RunRecord> {
        let mut state = self.lock();
        self.evict(&mut state);
        let ordinal = state.next_ordinal;
        state.next_ordinal += 1;
        let record = Arc::new(RunRecord {
            tool,
            agent,
            principal,
            create_time: SystemTime::now(),
            log,
            cancel,
            cancel_reason: AtomicU8::new(0),
            ended_elsewhere: OnceLock::new(),
            ordinal,
        });
        state
            .by_id
            .insert(Arc::clone(record.log.run_id()), Arc::clone(&record));
        state.by_ordinal.insert(ordinal, Arc::clone(&record));
        record
    }

    /// Notes that a run ended: its retention starts now.
    pub(crate) fn finished(&self, record: &RunRecord) {
        let mut state = self.lock();
        state.finished.push_back((Instant::now(), record.ordinal));
        self.evict(&mut state);
    }

    /// The run with this id, unless unknown or expired.
    pub(crate) fn get(&self, run_id: &str) -> Option<Arc<RunRecord>> {
        let mut state = self.lock();
        self.evict(&mut state);
        state.by_id.get(run_id).cloned()
    }

    /// A page of runs, newest first.
    pub(crate) fn list(&self, filter: &RunFilter) -> Result<RunPage, RunError> {
        let before = filter.before()?;
        let page_size = filter.effective_page_size();
        let candidates: Vec<Arc<RunRecord>> = {
            let mut state = self.lock();
            self.evict(&mut state);
            state
                .by_ordinal
                .range(..before)
                .rev()
                .filter(|(_, record)| filter.tool.as_ref().is_none_or(|tool| &record.tool == tool))
                .filter(|(_, record)| filter.accepts_principal(record.principal.as_deref()))
                .map(|(_, record)| Arc::clone(record))
                .collect()
        };
        let mut runs = Vec::with_capacity(page_size.min(candidates.len()));
        let mut next_page_token = String::new();
        for record in candidates {
            let snapshot = record.snapshot();
            if filter.state.is_some_and(|state| state != snapshot.state) {
                continue;
            }
            if runs.len() == page_size {
                next_page_token = encode_page_token(record.ordinal + 1);
                break;
            }
            runs.push(snapshot);
        }
        Ok(RunPage {
            runs,
            next_page_token,
        })
    }

    /// Every run still in progress.
    pub(crate) fn running(&self) -> Vec<Arc<RunRecord>> {
        self.lock()
            .by_ordinal
            .values()
            .filter(|record| record.log.lock().end.is_none())
            .cloned()
            .collect()
    }

    /// Forgets finished runs past their retention, and the oldest finished beyond `max_runs`.
    fn evict(&self, state: &mut TableState) {
        let now = Instant::now();
        while let Some(&(ended, ordinal)) = state.finished.front() {
            let expired = now.duration_since(ended) >= self.retention;
            if !expired && state.finished.len() <= self.max_runs {
                break;
            }
            state.finished.pop_front();
            if let Some(record) = state.by_ordinal.remove(&ordinal) {
                state.by_id.remove(record.log.run_id());
            }
        }
    }
}

impl RunFilter {
    /// The ordinal the page starts below (from the page token).
    pub(crate) fn before(&self) -> Result<u64, RunError> {
        if self.page_token.is_empty() {
            return Ok(u64::MAX);
        }
        decode_page_token(&self.page_token).ok_or_else(|| {
            RunError::InvalidArguments(format!(
                "page_token {:?} is not one this server issued; pass the \
                 next_page_token of the previous page, or nothing for the first page",
                self.page_token
            ))
        })
    }

    /// How many runs the page holds at most.
    pub(crate) fn effective_page_size(&self) -> usize {
        match self.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        }
    }

    /// Whether a run of `principal` belongs in the page (`principal` is `None` with auth off).
    pub(crate) fn accepts_principal(&self, principal: Option<&str>) -> bool {
        self.principal
            .as_deref()
            .is_none_or(|wanted| principal == Some(wanted))
    }

    /// Whether a run of `tool` in `state` belongs in the page.
    pub(crate) fn accepts(&self, tool: &str, state: RunState) -> bool {
        self.tool.as_ref().is_none_or(|t| t == tool) && self.state.is_none_or(|s| s == state)
    }
}

/// Page tokens are opaque to clients: the ordinal the next page starts below, in hex with a tag.
pub(crate) fn encode_page_token(before: u64) -> String {
    format!("r{before:x}")
}

fn decode_page_token(token: &str) -> Option<u64> {
    u64::from_str_radix(token.strip_prefix('r')?, 16).ok()
}
