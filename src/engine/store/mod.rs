//! The run store: where runs live, so that they can be looked up, listed, watched and cancelled
//! by id.
//!
//! One small trait, [`RunStore`], with its backends beside it (as `object_store` has one trait and
//! `InMemory`, `LocalFileSystem`, `AmazonS3`):
//! - [`MemoryStore`] (`memory`, the default): the runs of this process, in its memory. Nothing to
//!   set up and nothing shared.
//! - [`redis::RedisStore`] (`redis://host:port/db`): the runs of every replica that shares one
//!   Redis. Each run's events are a Redis stream, its record a hash, plus an index for ListRuns,
//!   leases and cancel requests; see that module and `docs/replicas.md`.
//!
//! Either way, the runs a replica executes are read from their in-memory log ([`super::log`]):
//! the caller and every local watcher read it directly, as with no store at all. The Redis store
//! mirrors each such log to Redis in the background and serves the runs of other replicas (and of
//! this one before a restart) from there. The RunService conformance suite
//! (`tests/it/run_service.rs`) runs the same cases against both backends.

pub(crate) mod redis;
mod settings;

pub use settings::{DEFAULT_KEY_PREFIX, DEFAULT_LEASE, RedisClientCert, StoreConfig};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::RunError;
use super::creation::{ClaimOutcome, HeldClaim, KeyClaim};
use super::event::RunOptions;
use super::input::Reply;
use super::reader::{EventStream, ReadFrom};
use super::runs::{
    CancelReason, RunFilter, RunPage, RunRecord, RunSnapshot, RunTable, is_run_id, unknown_run,
};
use crate::engine::Limits;

/// How long CancelRun waits for the run to end before answering with its state then.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// Where runs live. The engine inserts the runs it executes into [`local`](Self::local), asks
/// the store to [`publish`](Self::publish) each, and answers RunService through the rest.
pub(crate) trait RunStore: Send + Sync + 'static {
    /// The store as operators wrote it (`memory`, or the Redis URL without its password).
    fn name(&self) -> &str;

    /// This replica's id in a shared store (`None` for memory).
    fn replica(&self) -> Option<&str>;

    /// Whether the store can be reached now; it changes as the store comes and goes.
    fn health(&self) -> watch::Receiver<bool>;

    /// Refuses a new run at once when the store cannot take it.
    fn admit(&self) -> Result<(), RunError>;

    /// The runs this replica executes, and those it executed within the retention time: the
    /// hot path, read from memory.
    fn local(&self) -> &RunTable;

    /// Makes a run this replica just started visible to the other replicas; `None` when there
    /// are none to tell.
    fn publish(&self, record: &Arc<RunRecord>) -> Option<Publication>;

    /// A run's state now; [`RunError::UnknownRun`] for an unknown or expired id, and for a text
    /// that is no run id at all (each store checks ids with [`is_run_id`] before using them).
    fn get<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<RunSnapshot, RunError>>;

    /// A page of runs, newest first.
    fn list<'a>(&'a self, filter: &'a RunFilter) -> BoxFuture<'a, Result<RunPage, RunError>>;

    /// A new stream of a run's events from `from`.
    fn watch<'a>(
        &'a self,
        run_id: &'a str,
        from: ReadFrom,
        options: &'a RunOptions,
    ) -> BoxFuture<'a, Result<EventStream, RunError>>;

    /// Cancels a run for everyone, wherever it executes, and answers its state (final unless the
    /// run did not end within a few seconds).
    fn cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<RunSnapshot, RunError>>;

    /// The Redis a shared store uses, for other parts of the server that share state across the
    /// fleet (webhooks); `None` for memory.
    fn shared_redis(&self) -> Option<SharedRedis> {
        None
    }

    /// Claims an idempotency key for a new run, atomically: of many claims of one slot, on any
    /// replicas, one gets [`ClaimOutcome::Claimed`] and the rest see it held.
    fn claim<'a>(&'a self, claim: &'a KeyClaim) -> BoxFuture<'a, Result<ClaimOutcome, RunError>>;

    /// Frees a slot, if it still holds `held` (a claim whose run did not start, or whose run is
    /// gone).
    fn release<'a>(
        &'a self,
        slot: &'a str,
        held: &'a HeldClaim,
    ) -> BoxFuture<'a, Result<(), RunError>>;
    /// Answers an open input request of a run, wherever it executes (the replica that executes
    /// it decides, see [`respond_local`]), and answers the run's state then.
    fn respond<'a>(
        &'a self,
        run_id: &'a str,
        request_id: &'a str,
        reply: Reply,
    ) -> BoxFuture<'a, Result<RunSnapshot, RunError>>;

    /// At shutdown, once the runs ended: waits up to `grace` for their ends to be published,
    /// then leaves the store.
    fn close(&self, grace: Duration) -> BoxFuture<'_, ()>;
}

/// A run store, opened from its configuration: where runs live for lookup by anyone (see the
/// module docs). Cheap to clone.
#[derive(Clone)]
pub struct Store(pub(crate) Arc<dyn RunStore>);

/// Why a run store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's URL is not one this server understands.
    #[error("invalid run store {store}: {reason}")]
    Invalid {
        /// The store, as configured (without a password).
        store: String,
        /// What is wrong.
        reason: String,
    },
    /// The store refuses this server: wrong credentials or certificates (the settings that
    /// hold them are named by whoever read them, `serve`).
    #[error("the run store {store} refuses this server: {reason}")]
    Refused {
        /// The store, as configured (without a password).
        store: String,
        /// What it said.
        reason: String,
    },
}

/// The Redis of a shared run store, as the rest of the server may use it.
#[derive(Clone)]
pub struct SharedRedis {
    /// A client for it (TLS and credentials as configured).
    pub client: ::redis::Client,
    /// The fleet's key prefix: keys of others go under it too.
    pub key_prefix: String,
    /// This replica's id.
    pub replica: String,
}

impl Store {
    /// The Redis this store shares with the fleet (`None` for memory).
    pub fn shared_redis(&self) -> Option<SharedRedis> {
        self.0.shared_redis()
    }

    /// The in-process store: runs live in this process's memory (the default).
    pub fn memory(limits: &Limits) -> Store {
        Store(Arc::new(MemoryStore::new(limits)))
    }

    /// Opens the store `config` names. A Redis store that cannot be reached yet opens anyway,
    /// unhealthy (health NOT_SERVING, new runs UNAVAILABLE), and recovers when Redis comes.
    /// Must be called inside a tokio runtime (a shared store runs background tasks).
    pub async fn open(config: &StoreConfig, limits: &Limits) -> Result<Store, StoreError> {
        if config.is_memory() {
            return Ok(Store::memory(limits));
        }
        let store = redis::RedisStore::open(config, limits).await?;
        Ok(Store(store))
    }

    /// The store as configured (`memory`, or its URL without a password).
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// This replica's id in a shared store: the name other replicas' errors give for it.
    pub fn replica(&self) -> Option<&str> {
        self.0.replica()
    }
}

/// How a run being published to a shared store coordinates with it: the run waits for its record
/// to exist before its work starts, and publishes its end before its readers see it, so that
/// whoever saw a run start or end finds it so on every replica.
pub(crate) struct Publication {
    /// Set once the run's record exists in the store (or cannot be created).
    pub(crate) created: watch::Receiver<Option<Result<(), RunError>>>,
    /// Where the run's end goes.
    end: Option<oneshot::Sender<PublishEnd>>,
    /// Whether the store is reachable: when it is not, the end is not waited for.
    health: watch::Receiver<bool>,
}

/// The end of a run, to publish.
pub(crate) struct PublishEnd {
    /// The result or the error.
    pub(crate) outcome: Result<Value, RunError>,
    /// The sequence the `result` event gets (the log's next one).
    pub(crate) sequence: u64,
    /// When the run ended.
    pub(crate) timestamp: SystemTime,
    /// Told once the end is in the store.
    pub(crate) done: oneshot::Sender<()>,
}

/// How long a run's end waits to be in the store before its readers see it anyway (the store
/// gets it later).
const END_WAIT: Duration = Duration::from_secs(5);

impl Publication {
    pub(crate) fn new(
        created: watch::Receiver<Option<Result<(), RunError>>>,
        end: oneshot::Sender<PublishEnd>,
        health: watch::Receiver<bool>,
    ) -> Self {
        Publication {
            created,
            end: Some(end),
            health,
        }
    }

    /// Waits until the run's record exists in the store.
    pub(crate) async fn wait_created(&mut self) -> Result<(), RunError> {
        wait_created(&mut self.created).await
    }

    /// Publishes the run's end, waiting (within bounds) until the store has it.
    pub(crate) async fn publish_end(
        &mut self,
        outcome: &Result<Value, RunError>,
        sequence: u64,
        timestamp: SystemTime,
    ) {
        let Some(end) = self.end.take() else {
            return;
        };
        let (done, stored) = oneshot::channel();
        let sent = end.send(PublishEnd {
            outcome: outcome.clone(),
            sequence,
            timestamp,
            done,
        });
        if sent.is_err() || !*self.health.borrow() {
            return;
        }
        let _ = tokio::time::timeout(END_WAIT, stored).await;
    }
}

/// Waits for a run's record to be created (see [`Publication`]).
pub(crate) async fn wait_created(
    created: &mut watch::Receiver<Option<Result<(), RunError>>>,
) -> Result<(), RunError> {
    match created.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
        Err(_) => Err(RunError::Internal(
            "the run store's writer stopped before the run was recorded".into(),
        )),
    }
}

/// A stream of a run this replica holds in memory.
pub(crate) fn watch_local(
    record: &RunRecord,
    from: ReadFrom,
    options: &RunOptions,
    lag_budget: usize,
) -> Result<EventStream, RunError> {
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
        lag_budget,
        None,
    ))
}

/// Cancels a run this replica executes and answers its state once it ended.
pub(crate) async fn cancel_local(record: &RunRecord) -> RunSnapshot {
    if record.log.lock().end.is_none() {
        record.cancel(CancelReason::Requested);
        // The run's task ends it at once (dropping the tool's future); answer with the final
        // state. The bound only guards against a run whose task cannot be scheduled.
        let _ = tokio::time::timeout(CANCEL_WAIT, record.log.wait_end()).await;
    }
    record.snapshot()
}

/// Answers an input request of a run this replica executes (or executed) and answers its state.
pub(crate) fn respond_local(
    record: &RunRecord,
    request_id: &str,
    reply: Reply,
) -> Result<RunSnapshot, RunError> {
    record.log.respond(request_id, reply)?;
    Ok(record.snapshot())
}

/// The runs of this process, in its memory: the embedded default.
pub(crate) struct MemoryStore {
    table: RunTable,
    lag_budget: usize,
    health: watch::Sender<bool>,
    claims: Mutex<Claims>,
}

/// The idempotency keys of this process's runs, by slot.
struct Claims {
    held: HashMap<String, HeldClaim>,
    /// Claims of runs no longer held are dropped when there are this many.
    prune_at: usize,
}

impl MemoryStore {
    pub(crate) fn new(limits: &Limits) -> Self {
        MemoryStore {
            table: RunTable::new(limits.retention, limits.max_runs),
            lag_budget: limits.event_buffer,
            health: watch::Sender::new(true),
            claims: Mutex::new(Claims {
                held: HashMap::new(),
                prune_at: MIN_PRUNE_AT,
            }),
        }
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, run_id: &str) -> Result<Arc<RunRecord>, RunError> {
        if !is_run_id(run_id) {
            return Err(unknown_run(run_id));
        }
        self.table.get(run_id).ok_or_else(|| unknown_run(run_id))
    }
}

impl RunStore for MemoryStore {
    fn name(&self) -> &str {
        "memory"
    }

    fn replica(&self) -> Option<&str> {
        None
    }

    fn health(&self) -> watch::Receiver<bool> {
        self.health.subscribe()
    }

    fn admit(&self) -> Result<(), RunError> {
        Ok(())
    }

    fn local(&self) -> &RunTable {
        &self.table
    }

    fn publish(&self, _record: &Arc<RunRecord>) -> Option<Publication> {
        None
    }

    fn get<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<RunSnapshot, RunError>> {
        let snapshot = self.record(run_id).map(|record| record.snapshot());
        Box::pin(std::future::ready(snapshot))
    }

    fn list<'a>(&'a self, filter: &'a RunFilter) -> BoxFuture<'a, Result<RunPage, RunError>> {
        Box::pin(std::future::ready(self.table.list(filter)))
    }

    fn watch<'a>(
        &'a self,
        run_id: &'a str,
        from: ReadFrom,
        options: &'a RunOptions,
    ) -> BoxFuture<'a, Result<EventStream, RunError>> {
        let stream = self
            .record(run_id)
            .and_then(|record| watch_local(&record, from, options, self.lag_budget));
        Box::pin(std::future::ready(stream))
    }

    fn cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<RunSnapshot, RunError>> {
        Box::pin(async move {
            let record = self.record(run_id)?;
            Ok(cancel_local(&record).await)
        })
    }

    fn claim<'a>(&'a self, claim: &'a KeyClaim) -> BoxFuture<'a, Result<ClaimOutcome, RunError>> {
        let mut claims = self.claims();
        if claims.held.len() >= claims.prune_at {
            // Keys of runs that expired: amortised, the table bounds what stays.
            claims
                .held
                .retain(|_, held| !held.settled() || self.table.get(&held.run_id).is_some());
            claims.prune_at = (claims.held.len() * 2).max(MIN_PRUNE_AT);
        }
        let outcome = match claims.held.get(&claim.slot) {
            Some(held) => ClaimOutcome::Held(held.clone()),
            None => {
                claims.held.insert(claim.slot.clone(), claim.held.clone());
                ClaimOutcome::Claimed
            }
        };
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn release<'a>(
        &'a self,
        slot: &'a str,
        held: &'a HeldClaim,
    ) -> BoxFuture<'a, Result<(), RunError>> {
        let mut claims = self.claims();
        if claims.held.get(slot) == Some(held) {
            claims.held.remove(slot);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn respond<'a>(
        &'a self,
        run_id: &'a str,
        request_id: &'a str,
        reply: Reply,
    ) -> BoxFuture<'a, Result<RunSnapshot, RunError>> {
        let answered = self
            .record(run_id)
            .and_then(|record| respond_local(&record, request_id, reply));
        Box::pin(std::future::ready(answered))
    }

    fn close(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The fewest idempotency claims the memory store holds before it drops those of expired runs.
const MIN_PRUNE_AT: usize = 1024;
