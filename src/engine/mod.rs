//! The run engine: one *run* per RunTool/RunAgent call, held as a resource until it expires.
//!
//! A run has an id, a task, and a log ([`log`]) that numbers and timestamps its events; every
//! stream of the run (the caller's and each watcher's) is a reader ([`reader`]) with its own
//! cursor, which gets progress coalesced when it falls behind. The engine keeps a table of runs
//! ([`runs`]) for lookup, listing, watching and cancelling by id, estimates each call's time left
//! from its progress ([`eta`]), enforces the limit on concurrent runs and each run's deadline,
//! cancels a run when its caller goes away (unless the run was started to continue without one),
//! and drains at shutdown. A panicking run ends with an
//! error; the server goes on. The engine knows nothing of gRPC.

mod error;
mod eta;
mod event;
mod log;
mod reader;
mod runs;

#[cfg(test)]
mod log_tests;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use crate::config::Limits;
pub use error::RunError;
pub use event::{
    CallArguments, CallTag, EventKind, OnDisconnect, RunEvent, RunOptions, RunStarted,
};
pub use log::RunEnded;
pub use reader::{EventStream, ReadFrom};
pub use runs::{RunFilter, RunPage, RunSnapshot, RunState};

use crate::registry::ToolRegistry;
use crate::tools::{Progress, ToolError};
use log::{CallProgress, RunLog};
use runs::{CancelReason, RunRecord, RunTable};

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
    /// The principal the run belongs to (`None` with auth off).
    pub owner: Option<Arc<str>>,
}

/// A started run: its id, and its caller's stream of events.
pub struct RunHandle {
    /// The run's id.
    pub run_id: Arc<str>,
    /// Its events; dropping this cancels the run unless it was started with
    /// [`OnDisconnect::Continue`].
    pub events: EventStream,
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
    runs: Arc<RunTable>,
    /// Runs in progress per principal, for `[auth] max_runs_per_principal`.
    owners: Arc<OwnerRuns>,
}

impl Engine {
    /// An engine over `registry`.
    pub fn new(registry: Arc<ToolRegistry>, limits: Limits) -> Arc<Self> {
        Arc::new(Engine {
            registry,
            limits,
            permits: Arc::new(Semaphore::new(limits.max_concurrent_runs)),
            accepting: AtomicBool::new(true),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            runs: Arc::new(RunTable::new(limits.retention, limits.max_runs)),
            owners: Arc::new(OwnerRuns::default()),
        })
    }

    /// The tools this engine runs.
    pub fn registry(&self) -> &Arc<ToolRegistry> {
        &self.registry
    }

    /// Runs in progress now.
    pub fn active_runs(&self) -> usize {
        self.limits.max_concurrent_runs - self.permits.available_permits()
    }

    /// Starts a run of one tool. Fails at once, before anything runs, for an unknown tool, invalid
    /// arguments, a full server or a server shutting down.
    pub fn run_tool(&self, request: ToolRunRequest) -> Result<RunHandle, RunError> {
        let (tool, arguments) = self.registry.prepare(&request.tool, request.arguments)?;
        let name = request.tool;
        let started = RunStarted {
            tool: name.clone(),
            options: request.options,
            deadline: request.deadline,
            owner: request.owner,
            ..RunStarted::default()
        };
        self.start_run(started, move |run| async move {
            tool.run(arguments, run.progress())
                .await
                .map_err(|error| RunError::Tool { tool: name, error })
        })
    }

    /// Starts a run whose work is `body` (the agent loop uses this). `started` becomes the first
    /// event (an empty `tool` marks an agent run); `body`'s output becomes the result or the error
    /// that ends the run.
    pub fn start_run<F, Fut>(&self, started: RunStarted, body: F) -> Result<RunHandle, RunError>
    where
        F: FnOnce(RunContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, RunError>> + Send + 'static,
    {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(RunError::ShuttingDown);
        }
        // The principal's slot first: a principal at its limit must not take a server-wide
        // permit, even for a moment.
        let owner_slot = match (&started.owner, self.limits.max_runs_per_principal) {
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

        let run_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let log = RunLog::new(
            Arc::clone(&run_id),
            self.limits.event_buffer,
            self.limits.max_events_per_run,
        );
        let cancel = self.shutdown.child_token();
        let deadline = started.deadline.map(|d| (d, Instant::now() + d));
        let agent = started.tool.is_empty();
        let label = if agent {
            "agent".to_owned()
        } else {
            format!("tool {:?}", started.tool)
        };
        let options = started.options;
        let record = self.runs.insert(
            started.tool.clone(),
            agent,
            started.owner.clone(),
            Arc::clone(&log),
            cancel.clone(),
        );
        // Only RunError::... can fail here, and the log is new.
        let _ = log.push(EventKind::Started(started));
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
        );

        let context = RunContext {
            log: Arc::clone(&log),
            cancel: cancel.clone(),
            registry: Arc::clone(&self.registry),
            // Handed to tools through their Progress handle (Progress::deadline); enforced below
            // by run_to_end.
            deadline: deadline.map(|(_, at)| at),
        };
        let span = tracing::info_span!("run", run_id = %run_id, target = %label);
        self.tasks.spawn(
            run_to_end(RunTask {
                permit,
                record,
                runs: Arc::clone(&self.runs),
                shutdown: self.shutdown.clone(),
                deadline,
                label,
                body: body(context),
            })
            .instrument(span),
        );
        Ok(RunHandle { run_id, events })
    }

    /// A run's state now. [`RunError::UnknownRun`] for an unknown or expired id.
    pub fn get_run(&self, run_id: &str) -> Result<RunSnapshot, RunError> {
        Ok(self.record(run_id)?.snapshot())
    }

    /// A page of runs, newest first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<RunPage, RunError> {
        self.runs.list(filter)
    }

    /// A new stream of a run's events from `from`, with its own delivery options. Dropping it
    /// never affects the run.
    pub fn watch_run(
        &self,
        run_id: &str,
        from: ReadFrom,
        options: &RunOptions,
    ) -> Result<EventStream, RunError> {
        let record = self.record(run_id)?;
        if let ReadFrom::After(after) = from {
            let last = record.log.lock().last_sequence();
            if after > last {
                return Err(RunError::CursorPastEnd { after, last });
            }
        }
        Ok(EventStream::new(
            Arc::clone(&record.log),
            from,
            options,
            self.limits.event_buffer,
            None,
        ))
    }

    /// Cancels a run for everyone; a run that already ended is returned unchanged.
    pub async fn cancel_run(&self, run_id: &str) -> Result<RunSnapshot, RunError> {
        let record = self.record(run_id)?;
        if record.log.lock().end.is_none() {
            record.cancel(CancelReason::Requested);
            // The run's task ends it at once (dropping the tool's future); answer with the final
            // state. The bound only guards against a run whose task cannot be scheduled.
            let _ = tokio::time::timeout(Duration::from_secs(5), record.log.wait_end()).await;
        }
        Ok(record.snapshot())
    }

    /// How many events a run's log holds now (for tests and diagnostics: it stays within
    /// `max_events_per_run`, and near `2 × event_buffer` plus one per call for a run whose
    /// events are mostly progress, whatever its readers do).
    pub fn held_events(&self, run_id: &str) -> Option<usize> {
        self.runs
            .get(run_id)
            .map(|record| record.log.lock().events.len())
    }

    fn record(&self, run_id: &str) -> Result<Arc<RunRecord>, RunError> {
        self.runs
            .get(run_id)
            .ok_or_else(|| RunError::UnknownRun(run_id.to_owned()))
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
    /// the rest and waits for them to stop. Returns how many runs had to be cancelled.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.stop_accepting();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return 0;
        }
        let cancelled = self.runs.running().len();
        tracing::warn!(
            cancelled,
            "grace period over; cancelling the runs still in progress"
        );
        self.shutdown.cancel();
        self.tasks.wait().await;
        cancelled
    }
}

/// What a run holds while it is in progress: its place under the server's limit and, with a
/// per-principal limit, under its principal's. Both are given back when the run ends.
struct RunPermit {
    _server: OwnedSemaphorePermit,
    _owner: Option<OwnerSlot>,
}

/// How many runs each principal has in progress.
#[derive(Default)]
struct OwnerRuns {
    counts: std::sync::Mutex<std::collections::HashMap<Arc<str>, usize>>,
}

impl OwnerRuns {
    /// One more run for `owner`, unless it has `limit` in progress already.
    fn take(runs: &Arc<OwnerRuns>, owner: &Arc<str>, limit: usize) -> Result<OwnerSlot, RunError> {
        let mut counts = runs.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(Arc::clone(owner)).or_insert(0);
        if *count >= limit {
            return Err(RunError::PrincipalBusy {
                principal: owner.to_string(),
                limit,
            });
        }
        *count += 1;
        Ok(OwnerSlot {
            runs: Arc::clone(runs),
            owner: Arc::clone(owner),
        })
    }
}

/// One run of a principal in progress; counted until dropped.
struct OwnerSlot {
    runs: Arc<OwnerRuns>,
    owner: Arc<str>,
}

impl Drop for OwnerSlot {
    fn drop(&mut self) {
        let mut counts = self.runs.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.owner);
            }
        }
    }
}

struct RunTask<Fut> {
    permit: RunPermit,
    record: Arc<RunRecord>,
    runs: Arc<RunTable>,
    shutdown: CancellationToken,
    deadline: Option<(Duration, Instant)>,
    label: String,
    body: Fut,
}

async fn run_to_end<Fut>(task: RunTask<Fut>)
where
    Fut: Future<Output = Result<Value, RunError>> + Send,
{
    let RunTask {
        permit,
        record,
        runs,
        shutdown,
        deadline,
        label,
        body,
    } = task;
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
    // Pinned here, not in the select, so that a run that ends without its body (cancelled, past
    // its deadline) drops the body only after its end is logged: what the body does as it is
    // dropped (a tool's sub-tasks count as finished when their handles go) cannot look like
    // progress of a run that was stopped.
    let mut body = Box::pin(AssertUnwindSafe(body).catch_unwind());
    let outcome = tokio::select! {
        biased;
        _ = record.cancel.cancelled() => Err(if shutdown.is_cancelled() {
            RunError::Interrupted
        } else {
            match record.cancel_reason() {
                Some(CancelReason::Requested) => RunError::CancelRequested,
                _ => RunError::Cancelled,
            }
        }),
        limit = deadline_passed => Err(RunError::DeadlineExceeded(limit)),
        outcome = &mut body => outcome.unwrap_or_else(|panic| {
            Err(RunError::Panicked { what: label, message: panic_message(&*panic) })
        }),
    };
    match &outcome {
        Ok(_) => tracing::info!("run finished"),
        Err(error) if error.is_cancellation() => tracing::info!(%error, "run cancelled"),
        Err(error) => tracing::warn!(%error, "run failed"),
    }
    // The permit goes first, so that whoever sees the run's end also sees it no longer counted.
    drop(permit);
    record.log.finish(outcome);
    drop(body);
    runs.finished(&record);
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
            call,
        }))
        .with_deadline(self.deadline)
    }

    /// Logs an event that readers never skip. Never waits (the log is bounded on its own); fails
    /// once the run has ended.
    pub async fn emit(&self, kind: EventKind) -> Result<(), RunEnded> {
        self.log.push(kind)
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
