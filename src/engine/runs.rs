//! The runs an engine holds: every run in progress and, for a retention time, finished ones, so
//! they can be looked up, listed, watched and cancelled by id from any connection.
//!
//! Finished runs are kept for `retention` and at most `max_runs` of them (the oldest finished go
//! first); after that a run is unknown. Expiry is checked whenever the table is used, so a run
//! past its retention is never served.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::RunError;
use super::event::{EventKind, RunEvent};
use super::kind::RunKind;
use super::log::{RunEnd, RunLog};
use super::owner::Owner;

/// Runs a page of ListRuns holds unless asked otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest page ListRuns returns.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most calls a snapshot of a run (GetRun, ListRuns) shows the progress of, besides the top
/// level: the live calls that reported last. What a run is sent as stays small however many
/// calls it has; WatchRun from the latest state gives every live call.
pub const SNAPSHOT_CALLS: usize = 20;

/// A new run id: a random (version 4) UUID as 32 lowercase hex digits.
pub(crate) fn new_run_id() -> Arc<str> {
    Arc::from(uuid::Uuid::new_v4().simple().to_string())
}

/// Whether `run_id` has the form of the ids [`new_run_id`] makes. Anything else names no run, and
/// the run stores answer it as an unknown run before using it: a Redis store builds key names
/// from ids, so a client's `<id>:events` must never reach another key.
pub(crate) fn is_run_id(run_id: &str) -> bool {
    run_id.len() == 32
        && run_id
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// How much of an unknown id its error repeats: enough to recognise it, never a whole
/// megabyte-long one (the message travels in a header).
const UNKNOWN_ID_SHOWN: usize = 80;

/// The error for an id that names no run here (never existed, expired, or not an id at all).
pub(crate) fn unknown_run(run_id: &str) -> RunError {
    if run_id.len() <= UNKNOWN_ID_SHOWN {
        return RunError::UnknownRun(run_id.to_owned());
    }
    let mut end = UNKNOWN_ID_SHOWN;
    while !run_id.is_char_boundary(end) {
        end -= 1;
    }
    RunError::UnknownRun(format!("{}…", &run_id[..end]))
}

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
    /// Started, not yet ended, and waiting on at least one open input request.
    InputRequired,
}

/// A run as a resource, at one moment.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    /// The run's id.
    pub run_id: Arc<str>,
    /// Where it stands.
    pub state: RunState,
    /// What it runs.
    pub kind: RunKind,
    /// A tool run: the arguments it was called with; `None` for agent runs.
    pub arguments: Option<Value>,
    /// An agent run: the user's prompt; empty for tool runs.
    pub prompt: String,
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
    /// Whom it belongs to (`None`: no one).
    pub owner: Option<Owner>,
    /// The labels it was started with.
    pub labels: BTreeMap<String, String>,
    /// The idempotency key it was started with; empty for none.
    pub idempotency_key: String,
    /// The `input_requested` events of the requests open now, oldest first (empty once ended).
    pub pending_inputs: Vec<Arc<RunEvent>>,
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
    /// Only runs of this owner (`None`: anyone's, and no one's).
    pub owner: Option<Owner>,
    /// Only runs carrying every one of these labels, with the same value.
    pub labels: BTreeMap<String, String>,
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
    pub(crate) kind: RunKind,
    pub(crate) owner: Option<Owner>,
    pub(crate) create_time: SystemTime,
    pub(crate) log: Arc<RunLog>,
    pub(crate) cancel: CancellationToken,
    cancel_reason: AtomicU8,
    /// How the run store says the run ended, when it ended there first.
    ended_elsewhere: OnceLock<Box<RunError>>,
    /// Where the run stands in ListRuns.
    position: ListPosition,
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
            None if !state.inputs.open.is_empty() => (RunState::InputRequired, None, None),
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
        let called = called_with(state.started.as_deref());
        RunSnapshot {
            run_id: Arc::clone(self.log.run_id()),
            state: run_state,
            kind: self.kind.clone(),
            arguments: called.arguments,
            prompt: called.prompt,
            labels: called.labels,
            idempotency_key: called.idempotency_key,
            create_time: self.create_time,
            end_time: state.end_time,
            last_sequence: state.last_sequence(),
            progress,
            result,
            error,
            owner: self.owner.clone(),
            pending_inputs: if state.end.is_none() {
                state.inputs.open.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// What a run was called with, as its record shows it.
#[derive(Default)]
pub(crate) struct CalledWith {
    /// A tool run's arguments.
    pub(crate) arguments: Option<Value>,
    /// An agent run's prompt.
    pub(crate) prompt: String,
    /// The run's labels.
    pub(crate) labels: BTreeMap<String, String>,
    /// The run's idempotency key.
    pub(crate) idempotency_key: String,
}

/// What a run was called with, from its started event.
pub(crate) fn called_with(started: Option<&RunEvent>) -> CalledWith {
    match started.map(|event| &event.kind) {
        Some(EventKind::Started(started)) => CalledWith {
            arguments: started.arguments.clone(),
            prompt: started.prompt.clone(),
            labels: started.labels.clone(),
            idempotency_key: started.idempotency_key.clone(),
        },
        _ => CalledWith::default(),
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
    /// Runs in ListRuns order (read backwards: newest first).
    by_position: BTreeMap<ListPosition, Arc<RunRecord>>,
    /// Finished runs in the order they ended: (when, position).
    finished: VecDeque<(Instant, ListPosition)>,
}

impl RunTable {
    pub(crate) fn new(retention: Duration, max_runs: usize) -> Self {
        RunTable {
            retention,
            max_runs,
            state: Mutex::new(TableState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TableState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a new run, created now.
    pub(crate) fn insert(
        &self,
        kind: RunKind,
        owner: Option<Owner>,
        log: Arc<RunLog>,
        cancel: CancellationToken,
    ) -> Arc<RunRecord> {
        self.insert_created(SystemTime::now(), kind, owner, log, cancel)
    }

    fn insert_created(
        &self,
        create_time: SystemTime,
        kind: RunKind,
        owner: Option<Owner>,
        log: Arc<RunLog>,
        cancel: CancellationToken,
    ) -> Arc<RunRecord> {
        let mut state = self.lock();
        self.evict(&mut state);
        let position = ListPosition::new(create_time, Arc::clone(log.run_id()));
        let record = Arc::new(RunRecord {
            kind,
            owner,
            create_time,
            log,
            cancel,
            cancel_reason: AtomicU8::new(0),
            ended_elsewhere: OnceLock::new(),
            position: position.clone(),
        });
        state
            .by_id
            .insert(Arc::clone(record.log.run_id()), Arc::clone(&record));
        state.by_position.insert(position, Arc::clone(&record));
        record
    }

    /// Notes that a run ended: its retention starts now.
    pub(crate) fn finished(&self, record: &RunRecord) {
        let mut state = self.lock();
        state
            .finished
            .push_back((Instant::now(), record.position.clone()));
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
        let below = match filter.start_below()? {
            Some(position) => Bound::Excluded(position),
            None => Bound::Unbounded,
        };
        let page_size = filter.effective_page_size();
        let candidates: Vec<Arc<RunRecord>> = {
            let mut state = self.lock();
            self.evict(&mut state);
            state
                .by_position
                .range((Bound::Unbounded, below))
                .rev()
                .filter(|(_, record)| filter.accepts_kind(&record.kind))
                .filter(|(_, record)| filter.accepts_owner(record.owner.as_ref()))
                .map(|(_, record)| Arc::clone(record))
                .collect()
        };
        let mut runs = Vec::with_capacity(page_size.min(candidates.len()));
        // The position of the last run in `runs`: the next page's token.
        let mut last_listed: Option<&ListPosition> = None;
        let mut next_page_token = String::new();
        for record in &candidates {
            let snapshot = record.snapshot();
            if filter.state.is_some_and(|state| state != snapshot.state)
                || !filter.accepts_labels(&snapshot.labels)
            {
                continue;
            }
            if runs.len() == page_size {
                // The position of the page's last run: the caller's own, so the token tells
                // nothing of runs it may not see.
                if let Some(last) = last_listed {
                    next_page_token = last.token();
                }
                break;
            }
            runs.push(snapshot);
            last_listed = Some(&record.position);
        }
        Ok(RunPage {
            runs,
            next_page_token,
        })
    }

    /// Every run still in progress.
    pub(crate) fn running(&self) -> Vec<Arc<RunRecord>> {
        self.lock()
            .by_position
            .values()
            .filter(|record| record.log.lock().end.is_none())
            .cloned()
            .collect()
    }

    /// Forgets finished runs past their retention, and the oldest finished beyond `max_runs`.
    fn evict(&self, state: &mut TableState) {
        let now = Instant::now();
        while let Some((ended, _)) = state.finished.front() {
            let expired = now.duration_since(*ended) >= self.retention;
            if !expired && state.finished.len() <= self.max_runs {
                break;
            }
            let Some((_, position)) = state.finished.pop_front() else {
                break;
            };
            if let Some(record) = state.by_position.remove(&position) {
                state.by_id.remove(record.log.run_id());
            }
        }
    }
}

impl RunFilter {
    /// The position the page starts below (from the page token); `None` for the first page.
    pub(crate) fn start_below(&self) -> Result<Option<ListPosition>, RunError> {
        if self.page_token.is_empty() {
            return Ok(None);
        }
        ListPosition::from_token(&self.page_token)
            .map(Some)
            .ok_or_else(|| {
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

    /// Whether a run of `owner` belongs in the page.
    pub(crate) fn accepts_owner(&self, owner: Option<&Owner>) -> bool {
        self.owner
            .as_ref()
            .is_none_or(|wanted| owner == Some(wanted))
    }

    /// Whether a run with `labels` belongs in the page: it carries every label asked for.
    pub(crate) fn accepts_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    }

    /// Whether a run of `kind` belongs in the page: any run, or with a tool asked for, a run
    /// of that tool.
    pub(crate) fn accepts_kind(&self, kind: &RunKind) -> bool {
        self.tool
            .as_deref()
            .is_none_or(|wanted| kind.tool() == Some(wanted))
    }

    /// Whether a run of `kind` in `state` belongs in the page.
    pub(crate) fn accepts(&self, kind: &RunKind, state: RunState) -> bool {
        self.accepts_kind(kind) && self.state.is_none_or(|s| s == state)
    }
}

/// Where a run stands in ListRuns, which is newest first: by creation time, then (for runs
/// created in the same microsecond) by id, both descending. The Redis store orders its index the
/// same way (score: the creation time in µs; members with one score: by id), so a page token
/// from one replica continues the listing on any other.
///
/// A page token is the position of the page's last run. That run is the caller's own, so the
/// token tells nothing of the runs the caller may not see (a fleet-wide counter would: the gap
/// between two of one owner's runs would count everyone else's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ListPosition {
    /// When the run was created, in µs since the Unix epoch.
    pub(crate) created_us: u64,
    /// The run's id.
    pub(crate) run_id: Arc<str>,
}

impl ListPosition {
    pub(crate) fn new(create_time: SystemTime, run_id: Arc<str>) -> Self {
        ListPosition {
            created_us: unix_micros(create_time),
            run_id,
        }
    }

    /// The page token that continues the listing below this position.
    pub(crate) fn token(&self) -> String {
        format!("p{:x}.{}", self.created_us, self.run_id)
    }

    fn from_token(token: &str) -> Option<Self> {
        let (created, run_id) = token.strip_prefix('p')?.split_once('.')?;
        if !is_run_id(run_id) {
            return None;
        }
        Some(ListPosition {
            created_us: u64::from_str_radix(created, 16).ok()?,
            run_id: Arc::from(run_id),
        })
    }
}

/// Microseconds since the Unix epoch (0 before it).
pub(crate) fn unix_micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::future::Future;

    use super::*;

    /// A run for a listing test: (id, owner, seconds after the epoch it was created).
    pub(crate) type ListedRun = (String, &'static str, u64);

    /// The `n`th run id of a test.
    pub(crate) fn id(n: usize) -> String {
        format!("{n:032x}")
    }

    /// Three runs of owner "a", alone and with 50 runs of "b" started between its first and
    /// second, in the order they were created. (With a fleet-wide counter in the tokens, the token
    /// after "a"'s newest run named the ordinal of its second: 52 here, 2 alone.)
    pub(crate) fn alone_and_crowded() -> (Vec<ListedRun>, Vec<ListedRun>) {
        let alone = vec![(id(1), "a", 100), (id(2), "a", 200), (id(3), "a", 300)];
        let mut crowded = alone.clone();
        crowded.extend((0..50).map(|n| (id(100 + n), "b", 101 + n as u64)));
        crowded.sort_by_key(|(_, _, seconds)| *seconds);
        (alone, crowded)
    }

    /// `owner`'s listing through `list`, a run a page: the pages' ids and the tokens between
    /// them.
    pub(crate) async fn pages_of<F, Fut>(owner: &str, list: F) -> (Vec<String>, Vec<String>)
    where
        F: Fn(RunFilter) -> Fut,
        Fut: Future<Output = Result<RunPage, RunError>>,
    {
        let (mut ids, mut tokens) = (Vec::new(), Vec::new());
        let mut filter = RunFilter {
            page_size: 1,
            owner: Some(Owner::new(owner)),
            ..RunFilter::default()
        };
        loop {
            let page = list(filter.clone()).await.expect("a page");
            ids.extend(page.runs.iter().map(|run| run.run_id.to_string()));
            if page.next_page_token.is_empty() {
                return (ids, tokens);
            }
            tokens.push(page.next_page_token.clone());
            filter.page_token = page.next_page_token;
        }
    }

    fn table_of(runs: &[ListedRun]) -> RunTable {
        let table = RunTable::new(Duration::from_secs(3600), 1000);
        for (id, owner, seconds) in runs {
            table.insert_created(
                UNIX_EPOCH + Duration::from_secs(*seconds),
                RunKind::tool_run("t"),
                Some(Owner::new(*owner)),
                RunLog::new(Arc::from(id.as_str()), 8, 100),
                CancellationToken::new(),
            );
        }
        table
    }

    fn memory_pages(runs: &[ListedRun], owner: &str) -> (Vec<String>, Vec<String>) {
        let table = table_of(runs);
        futures::executor::block_on(pages_of(owner, |filter| {
            std::future::ready(table.list(&filter))
        }))
    }

    #[test]
    fn page_tokens_tell_nothing_of_other_owners_runs() {
        let (alone, crowded) = alone_and_crowded();
        let (ids, tokens) = memory_pages(&alone, "a");
        assert_eq!(ids, [id(3), id(2), id(1)]);
        assert_eq!(tokens.len(), 2);
        assert_eq!(memory_pages(&crowded, "a"), (ids, tokens));
    }

    #[test]
    fn runs_created_in_one_microsecond_are_paged_by_id_without_repeats() {
        let runs: Vec<ListedRun> = (1..=5).map(|n| (id(n), "a", 7)).collect();
        let (ids, _) = memory_pages(&runs, "a");
        assert_eq!(ids, [id(5), id(4), id(3), id(2), id(1)]);
    }

    #[test]
    fn a_token_not_issued_here_is_refused() {
        let table = table_of(&[]);
        for token in ["r35", "garbage", "p12.not-an-id", &format!("pzz.{}", id(1))] {
            let filter = RunFilter {
                page_token: token.to_owned(),
                ..RunFilter::default()
            };
            assert!(
                matches!(table.list(&filter), Err(RunError::InvalidArguments(_))),
                "{token}"
            );
        }
    }
}
