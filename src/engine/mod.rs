//! The run engine: one *run* per RunTool/RunAgent call.
//!
//! A run has an id, a task, and a bounded event queue ([`queue`]) that numbers and timestamps its
//! events and coalesces progress when the client reads slower than the run produces. The engine
//! enforces the limit on concurrent runs, each run's deadline, cancellation when the client goes
//! away (dropping the [`EventStream`] cancels the run), and graceful draining at shutdown. A
//! panicking run ends with an error; the server goes on. The engine knows nothing of gRPC.

mod error;
mod event;
mod queue;

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

pub use error::RunError;
pub use event::{CallArguments, CallTag, EventKind, RunEvent, RunOptions, RunStarted};
pub use queue::{Closed, EventStream};

use crate::registry::ToolRegistry;
use crate::tools::{Progress, ToolError};
use queue::{CallProgress, RunQueue};

/// Limits the engine enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Runs in progress at once; beyond it new runs get [`RunError::Busy`].
    pub max_concurrent_runs: usize,
    /// Progress events a run queues before it coalesces them, and other events it queues before
    /// their producer waits.
    pub event_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_runs: 16_384,
            event_buffer: 64,
        }
    }
}

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
}

/// A started run: its id, and its events.
pub struct RunHandle {
    /// The run's id.
    pub run_id: Arc<str>,
    /// Its events; dropping this cancels the run.
    pub events: EventStream,
}

/// Runs tools and agents.
pub struct Engine {
    registry: Arc<ToolRegistry>,
    limits: Limits,
    permits: Arc<Semaphore>,
    accepting: AtomicBool,
    /// Cancelled when draining gives up: every run still going is cancelled.
    shutdown: CancellationToken,
    runs: TaskTracker,
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
            runs: TaskTracker::new(),
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
            ..RunStarted::default()
        };
        self.start_run(started, move |run| async move {
            tool.run(arguments, run.progress())
                .await
                .map_err(|error| RunError::Tool { tool: name, error })
        })
    }

    /// Starts a run whose work is `body` (the agent loop uses this). `started` becomes the first
    /// event; `body`'s output becomes the result or the error that ends the stream.
    pub fn start_run<F, Fut>(&self, started: RunStarted, body: F) -> Result<RunHandle, RunError>
    where
        F: FnOnce(RunContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, RunError>> + Send + 'static,
    {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(RunError::ShuttingDown);
        }
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| RunError::Busy {
                limit: self.limits.max_concurrent_runs,
            })?;

        let run_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let queue = RunQueue::new(Arc::clone(&run_id), self.limits.event_buffer);
        let cancel = self.shutdown.child_token();
        let deadline = started.deadline.map(|d| (d, Instant::now() + d));
        let label = if started.tool.is_empty() {
            "agent".to_owned()
        } else {
            format!("tool {:?}", started.tool)
        };
        let events = EventStream::new(
            Arc::clone(&queue),
            cancel.clone(),
            started.options.min_progress_interval,
        );
        queue.push_now(EventKind::Started(started));

        let context = RunContext {
            queue: Arc::clone(&queue),
            registry: Arc::clone(&self.registry),
        };
        let span = tracing::info_span!("run", run_id = %run_id, target = %label);
        let shutdown = self.shutdown.clone();
        self.runs.spawn(
            run_to_end(RunTask {
                permit,
                queue,
                cancel,
                shutdown,
                deadline,
                label,
                body: body(context),
            })
            .instrument(span),
        );
        Ok(RunHandle { run_id, events })
    }

    /// Whether new runs are taken (false once shutdown began).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Stops taking new runs; runs in progress go on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// Waits up to `grace` for runs in progress to finish, then cancels the rest and waits for
    /// them to stop. Returns how many runs had to be cancelled.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.stop_accepting();
        self.runs.close();
        if tokio::time::timeout(grace, self.runs.wait()).await.is_ok() {
            return 0;
        }
        let cancelled = self.runs.len();
        tracing::warn!(
            cancelled,
            "grace period over; cancelling the runs still in progress"
        );
        self.shutdown.cancel();
        self.runs.wait().await;
        cancelled
    }
}

struct RunTask<Fut> {
    permit: OwnedSemaphorePermit,
    queue: Arc<RunQueue>,
    cancel: CancellationToken,
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
        queue,
        cancel,
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
    let outcome = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(if shutdown.is_cancelled() {
            RunError::Interrupted
        } else {
            RunError::Cancelled
        }),
        limit = deadline_passed => Err(RunError::DeadlineExceeded(limit)),
        outcome = AssertUnwindSafe(body).catch_unwind() => outcome.unwrap_or_else(|panic| {
            Err(RunError::Panicked { what: label, message: panic_message(&*panic) })
        }),
    };
    match &outcome {
        Ok(_) => tracing::info!("run finished"),
        Err(RunError::Cancelled) => tracing::info!("run cancelled by the client"),
        Err(error) => tracing::warn!(%error, "run failed"),
    }
    queue.finish(outcome);
    drop(permit);
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
    queue: Arc<RunQueue>,
    registry: Arc<ToolRegistry>,
}

impl RunContext {
    /// A progress handle for the run as a whole.
    pub fn progress(&self) -> Progress {
        self.call_progress(CallTag::top())
    }

    /// A progress handle whose events are tagged with `call`.
    pub fn call_progress(&self, call: CallTag) -> Progress {
        Progress::new(Arc::new(CallProgress {
            queue: Arc::clone(&self.queue),
            call,
        }))
    }

    /// Emits an event that is never dropped, waiting while the client is far behind. Fails when
    /// the client has gone away.
    pub async fn emit(&self, kind: EventKind) -> Result<(), Closed> {
        self.queue.push(kind).await
    }

    /// Whether the client has gone away.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
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
