//! The run engine: one *run* per RunTool/RunAgent call, held as a resource until it expires.
//!
//! A run has an id, a task, and a log ([`log`]) that numbers and timestamps its events; every
//! stream of the run (the caller's and each watcher's) is a reader ([`reader`]) with its own
//! cursor, which gets progress coalesced when it falls behind. The engine keeps its runs in a
//! table ([`runs`]) inside a run store ([`store`]: in memory, or shared by several replicas
//! through Redis) for lookup, listing, watching and cancelling by id, estimates each call's time
//! left from its progress ([`eta`]), enforces the limit on concurrent runs and each run's
//! deadline, cancels a run when its caller goes away (unless the run was started to continue
//! without one), and drains at shutdown. A panicking run ends with an
//! error; the server goes on. The engine knows nothing of gRPC.

mod creation;
mod error;
mod eta;
mod event;
mod input;
mod kind;
mod limits;
mod log;
mod observe;
mod open_requests;
mod owner;
mod partial;
mod reader;
mod runs;
mod store;

#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod log_tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use creation::{MAX_IDEMPOTENCY_KEY, MAX_LABEL_KEY, MAX_LABEL_VALUE, MAX_LABELS};
pub use error::RunError;
pub use event::{
    CallArguments, CallTag, EventKind, OnDisconnect, RunEvent, RunOptions, RunStarted, WireBytes,
};
pub use event::{InputOutcome, InputRequest};
pub use input::Reply;
pub use kind::RunKind;
pub use limits::Limits;
pub use log::RunEnded;
pub use observe::{NoObserver, RunObserver};
pub use owner::Owner;
pub use partial::HeldPartial;
pub use reader::{EventStream, ReadFrom};
pub use runs::{RunFilter, RunPage, RunSnapshot, RunState, SNAPSHOT_CALLS};
pub use store::{
    DEFAULT_KEY_PREFIX, DEFAULT_LEASE, RedisClientCert, SharedRedis, Store, StoreConfig, StoreError,
};

use crate::registry::ToolRegistry;
use crate::tools::{Progress, ToolError};
use log::{CallProgress, RunLog};
use owner::{OwnerRuns, OwnerSlot};
use runs::{CancelReason, RunRecord};
use store::{Publication, RunStore};

/// A request to run one tool.
#[derive(Debug, Clone)]
pub struct ToolRunRequest {
    /// The tool's name.
    pub tool: String,
    /// Its arguments; `None` is the empty object.
    pub arguments: Option<Value>,
    /// Delivery options.
    pub options: RunOptions,
    /// How long the client waits, from now.
    pub deadline: Option<Duration>,
    /// Whom the run belongs to (`None`: no one; anyone may see it).
    pub owner: Option<Owner>,
    /// Labels to find the run by.
    pub labels: BTreeMap<String, String>,
    /// The caller's idempotency key; empty for none.
    pub idempotency_key: String,
}

/// A started run: its id, and its caller's stream of events.
pub struct RunHandle {
    /// The run's id.
    pub run_id: Arc<str>,
    /// Its events; dropping this cancels the run unless it was started with
    /// [`OnDisconnect::Continue`].
    pub events: EventStream,
    /// With a shared run store: set once the run is recorded there.
    stored: Option<watch::Receiver<Option<Result<(), RunError>>>>,
}

impl RunHandle {
    /// Whether the run is recorded in the run store already (always with the in-memory store).
    pub fn is_stored(&self) -> bool {
        self.stored
            .as_ref()
            .is_none_or(|created| matches!(*created.borrow(), Some(Ok(()))))
    }

    /// Waits until the run is recorded in the run store, so that every replica knows it (at once
    /// with the in-memory store). Fails when the store cannot record it: the run then ends with
    /// that error without doing anything.
    pub async fn stored(&mut self) -> Result<(), RunError> {
        match &mut self.stored {
            None => Ok(()),
            Some(created) => store::wait_created(created).await,
        }
    }
}

/// Runs tools and agents, and holds their runs.
pub struct Engine {
    registry: Arc<ToolRegistry>,
    limits: Limits,
    permits: Arc<Semaphore>,
    accepting: AtomicBool,
    /// Cancelled when draining gives up: every run still going is cancelled.
    shutdown: CancellationToken,
    tasks: TaskTracker,
    store: Arc<dyn RunStore>,
    /// Told of every run's start and end and every stream's end (metrics, traces).
    observer: Arc<dyn RunObserver>,
    /// Runs in progress on this replica per owner, for [`Limits::max_runs_per_owner`].
    owners: Arc<OwnerRuns>,
}

impl Engine {
    /// What tells the observer, with a snapshot of `record`, that its run began waiting for
    /// input; `None` when the observer does not want to know.
    fn tell_of_waiting(&self, record: &Arc<RunRecord>) -> Option<Arc<dyn Fn() + Send + Sync>> {
        if !self.observer.watches_run_waits() {
            return None;
        }
        let (observer, record) = (Arc::clone(&self.observer), Arc::downgrade(record));
        Some(Arc::new(move || {
            if let Some(record) = record.upgrade() {
                observer.run_waiting(&record.snapshot());
            }
        }))
    }

    /// An engine over `registry`, keeping its runs in memory.
    pub fn new(registry: Arc<ToolRegistry>, limits: Limits) -> Arc<Self> {
        Self::with_store(registry, limits, Store::memory(&limits))
    }

    /// An engine over `registry`, keeping its runs in `store`.
    pub fn with_store(registry: Arc<ToolRegistry>, limits: Limits, store: Store) -> Arc<Self> {
        Self::with_observer(registry, limits, store, Arc::new(NoObserver))
    }

    /// An engine over `registry`, keeping its runs in `store`, that tells `observer` of its runs
    /// and of its streams' ends (the server's metrics and traces).
    pub fn with_observer(
        registry: Arc<ToolRegistry>,
        limits: Limits,
        store: Store,
        observer: Arc<dyn RunObserver>,
    ) -> Arc<Self> {
        Arc::new(Engine {
            registry,
            limits,
            permits: Arc::new(Semaphore::new(limits.max_concurrent_runs)),
            accepting: AtomicBool::new(true),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            store: store.0,
            observer,
            owners: Arc::new(OwnerRuns::default()),
        })
    }

    /// The run store, as configured (`memory`, or its URL without a password).
    pub fn store_name(&self) -> &str {
        self.store.name()
    }

    /// This replica's id in a shared run store.
    pub fn replica(&self) -> Option<&str> {
        self.store.replica()
    }

    /// Whether the run store can be reached; changes as it comes and goes (health follows it).
    pub fn store_health(&self) -> watch::Receiver<bool> {
        self.store.health()
    }

    /// The tools this engine runs.
    pub fn registry(&self) -> &Arc<ToolRegistry> {
        &self.registry
    }

    /// Runs in progress now.
    pub fn active_runs(&self) -> usize {
        self.limits.max_concurrent_runs - self.permits.available_permits()
    }

    /// Starts a run of one tool, or with an idempotency key its owner used already, answers the
    /// run that key started (see [`start_or_join`](Self::start_or_join)). Fails at once, before
    /// anything runs, for an unknown tool, invalid arguments or labels, a full server or a server
    /// shutting down.
    pub async fn run_tool(&self, request: ToolRunRequest) -> Result<RunHandle, RunError> {
        let (tool, arguments) = self.registry.prepare(&request.tool, request.arguments)?;
        let name = request.tool;
        let started = RunStarted {
            // Kept for the run's record, as the caller sent them.
            arguments: Some(arguments.clone()),
            options: request.options,
            deadline: request.deadline,
            owner: request.owner,
            labels: request.labels,
            idempotency_key: request.idempotency_key,
            ..RunStarted::new(RunKind::tool_run(name.as_str()))
        };
        self.start_or_join(started, move |run| async move {
            tool.run(arguments, run.progress())
                .await
                .map_err(|error| RunError::Tool { tool: name, error })
        })
        .await
    }

    /// Starts a run as [`start_run`](Self::start_run) does, unless it carries an idempotency key
    /// that its owner used for a run the store still holds: then nothing starts, and the handle
    /// is that run's, its events from the start. The same key with another tool, other arguments
    /// or another prompt fails with FAILED_PRECONDITION naming the key. With a key, the run is
    /// recorded in the store before this returns.
    pub async fn start_or_join<F, Fut>(
        &self,
        started: RunStarted,
        body: F,
    ) -> Result<RunHandle, RunError>
    where
        F: FnOnce(RunContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, RunError>> + Send + 'static,
    {
        if started.idempotency_key.is_empty() {
            return self.start_run(started, body);
        }
        creation::check_idempotency_key(&started.idempotency_key)?;
        creation::check_labels(&started.labels)?;
        let claim = creation::KeyClaim {
            slot: creation::claim_slot(started.owner.as_ref(), &started.idempotency_key),
            held: creation::HeldClaim {
                run_id: runs::new_run_id(),
                fingerprint: creation::fingerprint(&started),
                claimed_us: runs::unix_micros(SystemTime::now()),
            },
        };
        let mut wait = JOIN_POLL_FIRST;
        loop {
            let held = match self.store.claim(&claim).await? {
                creation::ClaimOutcome::Claimed => break,
                creation::ClaimOutcome::Held(held) => held,
            };
            // The same request joins the key's run; another is refused, if that run still exists.
            let same = held.fingerprint == claim.held.fingerprint;
            let found = if same {
                self.watch_run(&held.run_id, ReadFrom::After(0), &started.options)
                    .await
                    .map(Some)
            } else {
                self.store.get(&held.run_id).await.map(|_| None)
            };
            match found {
                Ok(Some(events)) => {
                    return Ok(RunHandle {
                        run_id: held.run_id,
                        events,
                        stored: None,
                    });
                }
                Ok(None) => {
                    return Err(creation::key_conflict(
                        &started.idempotency_key,
                        &held.run_id,
                    ));
                }
                Err(RunError::UnknownRun(_)) if held.settled() => {
                    // The key's run is gone (expired), or its creator never recorded it.
                    self.store.release(&claim.slot, &held).await?;
                }
                // Its creator is recording it: soon there.
                Err(RunError::UnknownRun(_)) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(JOIN_POLL_MAX);
                }
                Err(error) => return Err(error),
            }
        }
        let outcome = match self.start_run_as(Arc::clone(&claim.held.run_id), started, body) {
            Ok(mut handle) => handle.stored().await.map(|()| handle),
            Err(error) => Err(error),
        };
        if outcome.is_err() {
            // Nothing runs under the key: the next attempt may take it.
            let _ = self.store.release(&claim.slot, &claim.held).await;
        }
        outcome
    }

    /// Starts a run whose work is `body` (the agent loop uses this). `started` becomes the first
    /// event; `body`'s output becomes the result or the error
    /// that ends the run.
    pub fn start_run<F, Fut>(&self, started: RunStarted, body: F) -> Result<RunHandle, RunError>
    where
        F: FnOnce(RunContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, RunError>> + Send + 'static,
    {
        self.start_run_as(runs::new_run_id(), started, body)
    }

    /// [`start_run`](Self::start_run) under the id `run_id`.
    fn start_run_as<F, Fut>(
        &self,
        run_id: Arc<str>,
        started: RunStarted,
        body: F,
    ) -> Result<RunHandle, RunError>
    where
        F: FnOnce(RunContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, RunError>> + Send + 'static,
    {
        creation::check_labels(&started.labels)?;
        creation::check_idempotency_key(&started.idempotency_key)?;
        if !self.accepting.load(Ordering::Acquire) {
            return Err(RunError::ShuttingDown);
        }
        self.store.admit()?;
        // The owner's slot first: an owner at its limit must not take a server-wide permit,
        // even for a moment.
        let owner_slot = match (&started.owner, self.limits.max_runs_per_owner) {
            (Some(owner), Some(limit)) => Some(OwnerRuns::take(&self.owners, owner, limit)?),
            _ => None,
        };
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| RunError::Busy {
                limit: self.limits.max_concurrent_runs,
            })?;
        let permit = RunPermit {
            _server: permit,
            _owner: owner_slot,
        };

        let log = RunLog::for_run(Arc::clone(&run_id), &self.limits);
        let cancel = self.shutdown.child_token();
        let deadline = started.deadline.map(|d| (d, Instant::now() + d));
        let label = match &started.kind {
            RunKind::Tool(name) => format!("tool {name:?}"),
            RunKind::Agent => "agent".to_owned(),
        };
        let kind = started.kind.clone();
        let options = started.options;
        let record = self.store.local().insert(
            kind.clone(),
            started.owner.clone(),
            Arc::clone(&log),
            cancel.clone(),
        );
        // Before the run's body starts (nothing asks sooner).
        log.set_input_limits(open_requests::InputLimits {
            timeout: started.options.input_timeout,
            deadline: deadline.map(|(_, at)| at),
            observer: Some(Arc::clone(&self.observer)),
            began_waiting: self.tell_of_waiting(&record),
        });
        // Only RunError::... can fail here, and the log is new.
        let _ = log.push(EventKind::Started(Box::new(started)));
        let publication = self.store.publish(&record);
        let stored = publication.as_ref().map(|p| p.created.clone());
        let cancel_on_drop = match options.on_disconnect {
            OnDisconnect::Cancel => Some(Arc::clone(&record)),
            OnDisconnect::Continue => None,
        };
        let events = EventStream::new(
            Arc::clone(&log),
            ReadFrom::After(0),
            &options,
            self.limits.event_buffer,
            cancel_on_drop,
        )
        .observed(Arc::clone(&self.observer));

        let context = RunContext {
            log: Arc::clone(&log),
            cancel: cancel.clone(),
            registry: Arc::clone(&self.registry),
            // Handed to tools through their Progress handle (Progress::deadline); enforced below
            // by run_to_end.
            deadline: deadline.map(|(_, at)| at),
        };
        // The run's span: a child of the request's (and so of the caller's trace, see
        // `crate::traces`); `run.status` is recorded as the run ends (`succeeded`, `failed`
        // or `cancelled`), and the observer may add what the layers above call the outcome.
        let span = tracing::info_span!(
            "run",
            otel.name = "run",
            run.id = %run_id,
            tool = kind.tool().unwrap_or("<agent>"),
            run.status = tracing::field::Empty,
        );
        self.observer.run_started(&kind);
        self.tasks.spawn(
            run_to_end(RunTask {
                permit,
                record,
                store: Arc::clone(&self.store),
                publication: publication.map(Box::new),
                shutdown: self.shutdown.clone(),
                deadline,
                label,
                kind,
                observer: Arc::clone(&self.observer),
                body: body(context),
            })
            .instrument(span),
        );
        Ok(RunHandle {
            run_id,
            events,
            stored,
        })
    }

    /// A run's state now, wherever it executes. [`RunError::UnknownRun`] for an unknown or
    /// expired id.
    pub async fn get_run(&self, run_id: &str) -> Result<RunSnapshot, RunError> {
        self.store.get(run_id).await
    }

    /// A page of runs, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage, RunError> {
        for key in filter.labels.keys() {
            creation::check_label_key(key)?;
        }
        if filter.labels.len() > MAX_LABELS {
            return Err(RunError::InvalidArguments(format!(
                "a ListRuns filter names at most {MAX_LABELS} labels (no run has more)"
            )));
        }
        self.store.list(filter).await
    }

    /// A new stream of a run's events from `from`, with its own delivery options, wherever the
    /// run executes. Dropping it never affects the run.
    pub async fn watch_run(
        &self,
        run_id: &str,
        from: ReadFrom,
        options: &RunOptions,
    ) -> Result<EventStream, RunError> {
        let events = self.store.watch(run_id, from, options).await?;
        Ok(events.observed(Arc::clone(&self.observer)))
    }

    /// Answers the open input request `request_id` of a run, wherever it executes, and returns
    /// the run as it stands then. The first valid answer wins: see [`input`] for what is refused.
    pub async fn respond(
        &self,
        run_id: &str,
        request_id: &str,
        reply: Reply,
    ) -> Result<RunSnapshot, RunError> {
        self.store.respond(run_id, request_id, reply).await
    }

    /// Cancels a run for everyone, wherever it executes; a run that already ended is returned
    /// unchanged.
    pub async fn cancel_run(&self, run_id: &str) -> Result<RunSnapshot, RunError> {
        self.store.cancel(run_id).await
    }

    /// How many events a run's log holds now (for tests and diagnostics: it stays within
    /// `max_events_per_run`, and near `2 × event_buffer` plus an eighth plus one per call for a
    /// run whose events are mostly progress, whatever its readers do).
    pub fn held_events(&self, run_id: &str) -> Option<usize> {
        self.store
            .local()
            .get(run_id)
            .map(|record| record.log.lock().events.len())
    }

    /// How many tool calls and sub-tasks of a run are live now, for tests and diagnostics: it
    /// stays within [`Limits::max_live_calls_per_run`], finished ones being folded into their parents.
    pub fn live_calls(&self, run_id: &str) -> Option<usize> {
        self.store
            .local()
            .get(run_id)
            .map(|record| record.log.lock().live_calls())
    }

    /// Whether new runs are taken (false once shutdown began).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Stops taking new runs; runs in progress go on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// Waits up to `grace` for runs in progress (detached ones included) to finish, then cancels
    /// the rest and waits for them to stop; then leaves the run store (a shared one gets up to
    /// `grace` more for the runs' ends). Returns how many runs had to be cancelled.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.stop_accepting();
        self.tasks.close();
        let cancelled = if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            0
        } else {
            let cancelled = self.store.local().running().len();
            tracing::warn!(
                cancelled,
                "grace period over; cancelling the runs still in progress"
            );
            self.shutdown.cancel();
            self.tasks.wait().await;
            cancelled
        };
        self.store.close(grace).await;
        cancelled
    }
}

/// How long a creation that found its idempotency key claimed first waits for the claimed run to
/// be recorded before looking again; doubled each time up to [`JOIN_POLL_MAX`].
const JOIN_POLL_FIRST: Duration = Duration::from_millis(10);
/// The longest such wait.
const JOIN_POLL_MAX: Duration = Duration::from_millis(200);

/// What a run holds while it is in progress: its place under the server's limit and, with a
/// per-owner limit, under its owner's. Both are given back when the run ends.
struct RunPermit {
    _server: OwnedSemaphorePermit,
    _owner: Option<OwnerSlot>,
}

struct RunTask<Fut> {
    permit: RunPermit,
    record: Arc<RunRecord>,
    store: Arc<dyn RunStore>,
    publication: Option<Box<Publication>>,
    shutdown: CancellationToken,
    deadline: Option<(Duration, Instant)>,
    label: String,
    kind: RunKind,
    observer: Arc<dyn RunObserver>,
    body: Fut,
}

async fn run_to_end<Fut>(task: RunTask<Fut>)
where
    Fut: Future<Output = Result<Value, RunError>> + Send,
{
    let RunTask {
        permit,
        record,
        store,
        mut publication,
        shutdown,
        deadline,
        label,
        kind,
        observer,
        body,
    } = task;
    let started = Instant::now();
    // With a shared store, the run's work starts once every replica can find the run. (The
    // store's steps are boxed, so that a run of the memory store carries none of their state.)
    let refused = match publication.as_deref_mut() {
        Some(publication) => Box::pin(publication.wait_created())
            .await
            .err()
            .map(Box::new),
        None => None,
    };
    // Pinned here, not in the select, so that a run that ends without its body (cancelled, past
    // its deadline) drops the body only after its end is logged: what the body does as it is
    // dropped (a tool's sub-tasks count as finished when their handles go) cannot look like
    // progress of a run that was stopped.
    let mut body = Box::pin(AssertUnwindSafe(body).catch_unwind());
    let outcome = if let Some(error) = refused {
        tracing::warn!(%error, "the run store cannot record the run; it does not start");
        Err(*error)
    } else {
        tracing::debug!("run started");
        let deadline_passed = async {
            match deadline {
                Some((limit, at)) => {
                    tokio::time::sleep_until(at).await;
                    limit
                }
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            biased;
            _ = record.cancel.cancelled() => Err(if shutdown.is_cancelled() {
                RunError::Interrupted
            } else {
                match record.cancel_reason() {
                    Some(CancelReason::Requested) => RunError::CancelRequested,
                    Some(CancelReason::Elsewhere) => record
                        .ended_elsewhere()
                        .cloned()
                        .unwrap_or(RunError::Cancelled),
                    _ => RunError::Cancelled,
                }
            }),
            limit = deadline_passed => Err(RunError::DeadlineExceeded(limit)),
            // The tool passed a limit of what a run holds (too many sub-tasks open at once).
            limit = record.log.refused() => Err(RunError::TooManyLiveCalls {
                tool: kind.tool().unwrap_or("agent").to_owned(),
                limit,
            }),
            outcome = &mut body => outcome.unwrap_or_else(|panic| {
                Err(RunError::Panicked { what: label, message: panic_message(&*panic) })
            }),
        };
        // Requests still open are resolved before the end, so that every request a reader saw
        // has its outcome: the tool that asked is not answered now.
        record.log.resolve_open(&match &outcome {
            Err(RunError::DeadlineExceeded(_)) => InputOutcome::Expired,
            _ => InputOutcome::Cancelled,
        });
        match &outcome {
            Ok(_) => tracing::info!("run finished"),
            Err(error) if error.is_cancellation() => tracing::info!(%error, "run cancelled"),
            Err(error) => tracing::warn!(%error, "run failed"),
        }
        outcome
    };
    tracing::Span::current().record(
        "run.status",
        match &outcome {
            Ok(_) => "succeeded",
            Err(error) if error.is_cancellation() => "cancelled",
            Err(_) => "failed",
        },
    );
    // Counted before the end is visible, so that whoever sees the run's end sees it counted.
    observer.run_finished(&kind, outcome.as_ref().map(|_| ()), started.elapsed());
    let logged = record.log.lock().last_sequence();
    observer.events_produced(logged + u64::from(outcome.is_ok()));
    // The permit goes first, so that whoever sees the run's end also sees it no longer counted.
    drop(permit);
    match publication {
        None => record.log.finish(outcome),
        Some(publication) => Box::pin(publish_then_finish(publication, &record, outcome)).await,
    }
    drop(body);
    store.local().finished(&record);
    if observer.watches_run_ends() {
        observer.run_ended(&record.snapshot());
    }
}

/// Ends a published run: readers see the end once the store has it (or gave up waiting for it),
/// so that a caller who saw the result finds the run ended on every replica.
async fn publish_then_finish(
    mut publication: Box<Publication>,
    record: &RunRecord,
    outcome: Result<Value, RunError>,
) {
    let timestamp = SystemTime::now();
    if let Some(sequence) = record.log.seal() {
        publication.publish_end(&outcome, sequence, timestamp).await;
    }
    record.log.finish_at(outcome, timestamp);
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "panicked with a non-string payload".to_owned()
    }
}

/// What a run's body can do: report progress, emit events, and call tools.
#[derive(Clone)]
pub struct RunContext {
    log: Arc<RunLog>,
    cancel: CancellationToken,
    registry: Arc<ToolRegistry>,
    /// When the run's deadline passes, if it has one.
    deadline: Option<Instant>,
}

impl RunContext {
    /// A progress handle for the run as a whole.
    pub fn progress(&self) -> Progress {
        self.call_progress(CallTag::top())
    }

    /// A progress handle whose events are tagged with `call`.
    pub fn call_progress(&self, call: CallTag) -> Progress {
        Progress::new(Arc::new(CallProgress {
            log: Arc::clone(&self.log),
            call: Arc::new(call),
        }))
        .with_deadline(self.deadline)
    }

    /// Logs an event that readers never skip. Never waits (the log is bounded on its own); fails
    /// once the run has ended.
    pub async fn emit(&self, kind: EventKind) -> Result<(), RunEnded> {
        self.log.push(kind)
    }

    /// Asks a person `question` on behalf of `call` (an agent's approval of a tool call) and
    /// waits for the outcome; see [`input`].
    pub async fn ask(
        &self,
        call: CallTag,
        question: crate::tools::Question,
    ) -> crate::tools::Answer {
        self.log.ask(Arc::new(call), question, None).await
    }

    /// Whether the run was cancelled (its work is about to be dropped).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The tools of this server.
    pub fn registry(&self) -> &Arc<ToolRegistry> {
        &self.registry
    }

    /// Runs one tool call inside this run, reporting through `progress` (usually
    /// [`call_progress`](Self::call_progress) of `call`, or a wrapper around it). A failure
    /// (unknown tool, invalid arguments, tool error, panic) comes back as a [`CallError`] for the
    /// run's body to handle (the agent puts it in words for the model); it does not end the run.
    pub async fn call_tool(
        &self,
        call: &CallTag,
        arguments: Value,
        progress: Progress,
    ) -> Result<Value, CallError> {
        let (tool, arguments) = self
            .registry
            .prepare(&call.tool, Some(arguments))
            .map_err(CallError::Rejected)?;
        match AssertUnwindSafe(tool.run(arguments, progress))
            .catch_unwind()
            .await
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CallError::Failed(error)),
            Err(panic) => Err(CallError::Panicked(panic_message(&*panic))),
        }
    }
}

/// How one tool call inside a run failed (see [`RunContext::call_tool`]); the run goes on.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No tool has that name, or the arguments fail its input schema.
    #[error(transparent)]
    Rejected(crate::registry::LookupError),
    /// The tool ran and reported an error.
    #[error("the tool failed: {0}")]
    Failed(ToolError),
    /// The tool panicked; the message is the panic's.
    #[error("the tool crashed: {0}")]
    Panicked(String),
}
