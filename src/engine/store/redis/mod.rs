//! The Redis run store (`redis://host:port/db`, or a Redis Cluster: `redis+cluster://h1:p1,…`):
//! the runs of every replica that shares one Redis. [`connection`] says how each is reached; in a
//! cluster the keys are hash-tagged ([`keys`]) and the scripts touch one slot ([`scripts`]).
//!
//! - **Writing** ([`writer`]): the replica that executes a run records it (a hash, an entry in the
//!   index) before the run's work starts, then a writer task mirrors the run's in-memory log to a
//!   Redis stream in batches (one script call per batch; progress coalesced per call within a
//!   batch, never other events), and publishes the run's end (terminal event and final state
//!   together, exactly once) before the run's own readers see it.
//! - **Reading** ([`follower`]): GetRun and ListRuns read the records and the index; WatchRun of a
//!   run executing elsewhere replays the stream with XRANGE and follows it with XREAD BLOCK on a
//!   connection of its own, into a log of this replica that all its watchers of that run read.
//! - **Replicas** ([`replica`]): each replica renews a lease; a replica whose lease lapsed is
//!   lost, and any replica ends its runs with UNAVAILABLE naming it. Cancel requests for a run
//!   reach its owner through a list it blocks on. The lease renewal is also the health check.
//!
//! Every key expires: a running run's keys a day after its last write (its writer refreshes them),
//! a finished run's after the retention time. See `docs/replicas.md` for the keys and failures.

mod answers;
mod codec;
mod connection;
mod follower;
mod keys;
mod replica;
mod scripts;
// The unit tests start their redis-server with the integration tests' helper: one file for both
// (unit tests cannot reach `tests/it/common` as a module any other way).
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../../tests/it/common/redis_server.rs"]
mod test_redis;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use redis::AsyncCommands;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{Publication, RunStore, StoreError, cancel_local, respond_local, watch_local};
use crate::engine::RunError;
use crate::engine::creation::{ClaimOutcome, HeldClaim, KeyClaim};
use crate::engine::event::{EventKind, RunEvent, RunOptions};
use crate::engine::input::Reply;
use crate::engine::log::RunLog;
use crate::engine::reader::{EventStream, ReadFrom};
use crate::engine::runs::{
    ListPosition, RunFilter, RunPage, RunRecord, RunSnapshot, RunState, RunTable, is_run_id,
    unknown_run,
};
use crate::engine::{InputOutcome, Limits, StoreConfig};
use codec::StoredRecord;
use connection::{Connection, Connector};
use keys::Keys;

/// A running run's keys expire this long after its writer last refreshed them (it does at least
/// every quarter of this), so that a fleet that vanished leaves nothing forever.
const RUNNING_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long CancelRun of a run executing elsewhere waits for it to end.
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// How often ending a lost owner's run is tried when the owner wrote to it between the read of
/// its record and the end (a replica whose lease lapsed while it still runs).
const LOST_ATTEMPTS: u32 = 3;

/// An index entry: a run id with its score.
type ScoredId = (String, f64);

/// The Redis store of one replica.
pub(crate) struct RedisStore {
    shared: Arc<Shared>,
    /// The writer tasks of this replica's runs.
    writers: TaskTracker,
    /// Stops the background tasks (lease, sweeper, cancel listener, followers).
    stop: CancellationToken,
}

/// What the store's tasks share.
pub(super) struct Shared {
    /// The store as configured, without a password.
    name: String,
    /// This replica's id.
    replica: String,
    /// Where connections come from: one server, or a cluster.
    connector: Connector,
    /// The connection for everything that does not block (multiplexed, reconnecting).
    conn: Connection,
    keys: Keys,
    lease: Duration,
    limits: Limits,
    /// The runs this replica executes.
    local: RunTable,
    health: watch::Sender<bool>,
    /// Since when the store has been reachable without a break (`None` while it is not).
    reachable_since: Mutex<Option<tokio::time::Instant>>,
    /// Why the store was last unreachable.
    last_error: Mutex<String>,
    /// Why the store last refused this replica (credentials, certificates), while it does.
    refused: Mutex<Option<String>>,
    /// This replica's logs of runs executing elsewhere, shared by their watchers here.
    followers: tokio::sync::Mutex<HashMap<String, Weak<RunLog>>>,
    stop: CancellationToken,
}

impl RedisStore {
    /// Opens the store: connects lazily, checks it once (a store that cannot be reached opens
    /// unhealthy), and starts the replica's background tasks.
    pub(crate) async fn open(
        config: &StoreConfig,
        limits: &Limits,
    ) -> Result<Arc<RedisStore>, StoreError> {
        let name = config.redacted_url();
        let invalid = |reason: String| StoreError::Invalid {
            store: name.clone(),
            reason,
        };
        let connector = Connector::open(config, follower::block_time(config.lease))
            .map_err(|e| invalid(e.to_string()))?;
        let conn = connector.shared().map_err(|e| invalid(e.to_string()))?;
        let replica = format!(
            "{}-{}",
            config
                .replica_name
                .clone()
                .unwrap_or_else(replica::host_name),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            name,
            replica,
            keys: Keys::new(&config.key_prefix, connector.is_cluster()),
            connector,
            conn,
            lease: config.lease,
            limits: *limits,
            local: RunTable::new(limits.retention, limits.max_runs),
            health: watch::Sender::new(false),
            reachable_since: Mutex::new(None),
            last_error: Mutex::new("not checked yet".into()),
            refused: Mutex::new(None),
            followers: tokio::sync::Mutex::new(HashMap::new()),
            stop: stop.clone(),
        });
        shared.renew_lease().await;
        if let Some(reason) = shared.refusal() {
            // Wrong credentials or certificates do not mend with time: say so at start-up.
            return Err(StoreError::Refused {
                store: shared.name.clone(),
                reason,
            });
        }
        if !*shared.health.borrow() {
            tracing::warn!(
                store = %shared.name,
                reason = %shared.last_error(),
                "the run store cannot be reached yet: health NOT_SERVING until it can"
            );
        }
        replica::spawn(&shared);
        Ok(Arc::new(RedisStore {
            shared,
            writers: TaskTracker::new(),
            stop,
        }))
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Milliseconds in a duration, for PEXPIRE and friends.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Shared {
    /// Why the store refuses this replica, when it does: wrong credentials or certificates.
    fn refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The error a client gets when the store fails.
    fn unavailable(&self, reason: impl std::fmt::Display) -> RunError {
        RunError::StoreUnavailable {
            store: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// Keys of the index and other fleet-wide sets outlive every run they name.
    fn index_ttl(&self) -> u64 {
        millis(RUNNING_TTL + self.limits.retention)
    }

    fn conn(&self) -> Connection {
        self.conn.clone()
    }

    /// A connection of its own for a blocking command of up to `block`.
    async fn blocking_conn(&self, block: Duration) -> Result<connection::Connection, RunError> {
        self.connector
            .dedicated(block)
            .await
            .map_err(|e| self.unavailable(e))
    }

    async fn respond(
        self: &Arc<Self>,
        run_id: &str,
        request_id: &str,
        reply: Reply,
    ) -> Result<RunSnapshot, RunError> {
        if let Some(record) = self.local.get(run_id) {
            return respond_local(&record, request_id, reply);
        }
        let record = self.existing(run_id).await?;
        let record = self.settle(run_id, record).await?;
        self.respond_elsewhere(run_id, record, request_id, reply)
            .await
    }

    /// Whether the store is a Redis Cluster (where a script touches one slot only).
    fn is_cluster(&self) -> bool {
        self.connector.is_cluster()
    }

    /// Redis Cluster: what a run's end changes outside the run's own slot, which one script does
    /// with a single server. Each step is idempotent: the run leaves its replica's set and its
    /// owner's (its place under `max_runs_per_owner` is free) and joins the finished
    /// runs; the oldest finished beyond `max_runs` leave the index, and their keys go.
    async fn record_end_in_fleet(
        &self,
        run_id: &str,
        owner: &str,
        belongs_to: &str,
        end_ms: u64,
    ) -> redis::RedisResult<()> {
        let (mut first, mut second, mut third) = (self.conn(), self.conn(), self.conn());
        let owner_runs = first.srem::<_, _, ()>(self.keys.replica_runs(owner), run_id);
        let owned = second.srem::<_, _, ()>(self.keys.owned_runs(belongs_to), run_id);
        let mut call = scripts::RUN_ENDED.prepare_invoke();
        call.key(self.keys.finished())
            .key(self.keys.index())
            .arg(run_id)
            .arg(end_ms)
            .arg(self.index_ttl())
            .arg(self.limits.max_runs);
        let finished = call.invoke_async::<Vec<String>>(&mut third);
        let ((), (), evicted) = tokio::try_join!(owner_runs, owned, finished)?;
        for gone in evicted {
            // A run's two keys share its slot: one command.
            let _: () = self
                .conn()
                .del(&[self.keys.record(&gone), self.keys.events(&gone)])
                .await?;
        }
        Ok(())
    }

    /// A run's record, `None` when there is none.
    async fn read_record(&self, run_id: &str) -> Result<Option<StoredRecord>, RunError> {
        let fields: HashMap<String, String> = self
            .conn()
            .hgetall(self.keys.record(run_id))
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(StoredRecord::parse(fields))
    }

    /// Whether `replica` holds its lease.
    async fn lease_alive(&self, replica: &str) -> redis::RedisResult<bool> {
        self.conn().exists(self.keys.lease(replica)).await
    }

    /// Ends `run_id` with UNAVAILABLE naming `owner` (its open input requests resolved CANCELLED
    /// just before), if it still runs there and `owner`'s lease lapsed. Returns whether it did.
    ///
    /// Only a replica that has reached the store for a whole lease time judges others: after an
    /// outage of the store every lease may have lapsed, and live replicas need a renewal (at most
    /// a second) to take theirs back before anyone is taken for lost.
    async fn declare_lost(&self, run_id: &str, owner: &str) -> redis::RedisResult<bool> {
        if !self.reachable_for(self.lease) {
            return Ok(false);
        }
        let cluster = self.is_cluster();
        // In Redis Cluster the lease lives in another slot than the run: checked just before
        // (an owner that renews in between is ended as lost while alive; its writer then finds
        // the run ended and ends it locally the same way, so every stream agrees).
        if cluster && self.lease_alive(owner).await? {
            return Ok(false);
        }
        let mut attempts = 0;
        let (reply, belongs_to, now) = loop {
            let record = StoredRecord::parse(self.conn().hgetall(self.keys.record(run_id)).await?);
            // Whose run it is (it never changes): its end frees a place under the owner's limit.
            let belongs_to = record
                .as_ref()
                .map_or_else(String::new, |record| record.belongs_to.clone());
            let now = SystemTime::now();
            let reply = self
                .end_as_lost(run_id, owner, record.as_ref(), &belongs_to, now)
                .await?;
            attempts += 1;
            if reply != "changed" {
                break (reply, belongs_to, now);
            }
            if attempts == LOST_ATTEMPTS {
                // Its owner keeps writing: not lost after all, or the next sweep ends it.
                return Ok(false);
            }
        };
        let lost = reply == "lost";
        if cluster && lost {
            self.record_end_in_fleet(run_id, owner, &belongs_to, codec::unix_millis(now))
                .await?;
        } else if cluster {
            // Not (or no longer) a running run of `owner`'s: out of its set, as the script does
            // with one server.
            let _: () = self
                .conn()
                .srem(self.keys.replica_runs(owner), run_id)
                .await?;
            if let Some(ended) =
                StoredRecord::parse(self.conn().hgetall(self.keys.record(run_id)).await?)
                && ended.state != RunState::Running
                && ended.owner == owner
            {
                // Its owner may have died between writing the end and the rest of it: done here
                // (again, harmlessly, if it did not).
                let end_ms = ended.end_ns.map_or(0, |ns| ns / 1_000_000);
                self.record_end_in_fleet(run_id, owner, &belongs_to, end_ms)
                    .await?;
            }
        }
        if lost {
            tracing::warn!(
                run_id,
                replica = owner,
                "the replica running this run stopped renewing its lease: the run ended UNAVAILABLE"
            );
        }
        Ok(lost)
    }

    /// One attempt of [`Shared::declare_lost`]: the script, given the run's `record` as just read
    /// (its open requests are resolved CANCELLED before its end, with the sequences after its
    /// `last_sequence`). Returns the script's reply (`changed` when the owner wrote meanwhile).
    async fn end_as_lost(
        &self,
        run_id: &str,
        owner: &str,
        record: Option<&StoredRecord>,
        belongs_to: &str,
        now: SystemTime,
    ) -> redis::RedisResult<String> {
        let last = record.map_or(0, |record| record.last_sequence);
        let open = record.map_or_else(Vec::new, |record| record.open_requests(run_id));
        let run: Arc<str> = Arc::from(run_id);
        let resolutions: Vec<(u64, String)> = (last + 1..)
            .zip(&open)
            .filter_map(|(sequence, request_id)| {
                let resolved = RunEvent::new(
                    Arc::clone(&run),
                    sequence,
                    now,
                    EventKind::InputResolved {
                        request_id: Arc::clone(request_id),
                        outcome: InputOutcome::Cancelled,
                    },
                );
                Some((sequence, codec::encode_event(&resolved)?))
            })
            .collect();
        let error = codec::encode_error(&RunError::ReplicaLost {
            replica: owner.to_owned(),
        });
        let mut call = scripts::DECLARE_LOST.prepare_invoke();
        call.key(self.keys.record(run_id))
            .key(self.keys.events(run_id));
        if !self.is_cluster() {
            call.key(self.keys.index())
                .key(self.keys.finished())
                .key(self.keys.replica_runs(owner))
                .key(self.keys.lease(owner))
                .key(self.keys.owned_runs(belongs_to));
        }
        call.arg(run_id)
            .arg(owner)
            .arg(codec::unix_nanos(now))
            .arg(error)
            .arg(millis(self.limits.retention))
            .arg(self.limits.max_runs)
            .arg(self.keys.prefix())
            .arg(self.index_ttl())
            .arg(codec::unix_millis(now))
            .arg(self.limits.max_events_per_run)
            .arg(last)
            .arg(last + resolutions.len() as u64)
            .arg(resolutions.len());
        for (sequence, stored) in &resolutions {
            call.arg(keys::entry_id(*sequence)).arg(stored);
        }
        call.arg(open.len());
        for request_id in &open {
            call.arg(format!("{}{request_id}", codec::INPUT_FIELD));
        }
        call.invoke_async(&mut self.conn()).await
    }

    /// The record of a run, with a run whose owner is lost ended first.
    async fn settle(&self, run_id: &str, record: StoredRecord) -> Result<StoredRecord, RunError> {
        if record.state != RunState::Running || record.owner == self.replica {
            return Ok(record);
        }
        let alive = self
            .lease_alive(&record.owner)
            .await
            .map_err(|e| self.unavailable(e))?;
        if alive {
            return Ok(record);
        }
        self.declare_lost(run_id, &record.owner)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(self.read_record(run_id).await?.unwrap_or(record))
    }

    /// A run's record, or NOT_FOUND. Every id a client gives passes here before a key is built
    /// from it: a text that is no run id (`<id>:events`, `*`, `{x}`) names no key at all.
    async fn existing(&self, run_id: &str) -> Result<StoredRecord, RunError> {
        if !is_run_id(run_id) {
            return Err(unknown_run(run_id));
        }
        self.read_record(run_id)
            .await?
            .ok_or_else(|| unknown_run(run_id))
    }

    async fn get(&self, run_id: &str) -> Result<RunSnapshot, RunError> {
        if let Some(record) = self.local.get(run_id) {
            return Ok(record.snapshot());
        }
        let record = self.existing(run_id).await?;
        Ok(self.settle(run_id, record).await?.snapshot(run_id))
    }

    /// The index a listing walks: every run's, or with a label filter the smallest index of the
    /// labels asked for (one round trip to size them), whose runs are then checked for the
    /// other labels.
    async fn listing_index(&self, filter: &RunFilter) -> Result<String, RunError> {
        let indexes: Vec<String> = filter
            .labels
            .iter()
            .map(|(key, value)| self.keys.label(key, value))
            .collect();
        if indexes.len() <= 1 {
            return Ok(indexes
                .into_iter()
                .next()
                .unwrap_or_else(|| self.keys.index()));
        }
        // One command per index, sent together: in Redis Cluster each is a key of its own slot.
        let sizes: Vec<u64> = futures::future::try_join_all(indexes.iter().map(|index| {
            let mut conn = self.conn();
            async move { conn.zcard::<_, u64>(index).await }
        }))
        .await
        .map_err(|e| self.unavailable(e))?;
        Ok(indexes
            .into_iter()
            .zip(sizes)
            .min_by_key(|(_, size)| *size)
            .map(|(index, _)| index)
            .unwrap_or_else(|| self.keys.index()))
    }

    async fn list(&self, filter: &RunFilter) -> Result<RunPage, RunError> {
        let index = self.listing_index(filter).await?;
        let mut below = filter.start_below()?;
        let page_size = filter.effective_page_size();
        let chunk = (page_size + 1).clamp(32, 1000);
        let mut runs = Vec::with_capacity(page_size.min(chunk));
        // The position of the last run in `runs`: the next page's token.
        let mut last_listed: Option<ListPosition> = None;
        let mut next_page_token = String::new();
        let mut owners_alive: HashMap<String, bool> = HashMap::new();
        'pages: loop {
            let (positions, more) = self.index_below(&index, below.as_ref(), chunk).await?;
            if positions.is_empty() {
                break;
            }
            let records = self
                .records_of(&positions)
                .await
                .map_err(|e| self.unavailable(e))?;
            let mut expired = Vec::new();
            for (position, fields) in positions.into_iter().zip(records) {
                below = Some(position.clone());
                let id = &*position.run_id;
                let snapshot = if let Some(local) = self.local.get(id) {
                    // This replica's own runs: fresher from memory.
                    local.snapshot()
                } else {
                    let Some(mut record) = StoredRecord::parse(fields) else {
                        expired.push(id.to_owned());
                        continue;
                    };
                    if record.state == RunState::Running && record.owner != self.replica {
                        let alive = match owners_alive.get(&record.owner) {
                            Some(alive) => *alive,
                            None => {
                                let alive = self
                                    .lease_alive(&record.owner)
                                    .await
                                    .map_err(|e| self.unavailable(e))?;
                                owners_alive.insert(record.owner.clone(), alive);
                                alive
                            }
                        };
                        if !alive {
                            record = self.settle(id, record).await?;
                        }
                    }
                    record.snapshot(id)
                };
                if !filter.accepts(&snapshot.kind, snapshot.state)
                    || !filter.accepts_owner(snapshot.owner.as_ref())
                    || !filter.accepts_labels(&snapshot.labels)
                {
                    continue;
                }
                if runs.len() == page_size {
                    if let Some(last) = &last_listed {
                        next_page_token = last.token();
                    }
                    break 'pages;
                }
                runs.push(snapshot);
                last_listed = Some(position);
            }
            if !expired.is_empty() {
                let _: redis::RedisResult<()> = self.conn().zrem(&index, expired).await;
            }
            if !more {
                break;
            }
        }
        Ok(RunPage {
            runs,
            next_page_token,
        })
    }

    /// The records of the runs at `positions` (empty where there is none): one pipeline with a
    /// single server; in Redis Cluster (a run per slot) one call per run, sent together.
    async fn records_of(
        &self,
        positions: &[ListPosition],
    ) -> redis::RedisResult<Vec<HashMap<String, String>>> {
        if self.is_cluster() {
            let reads = positions.iter().map(|position| {
                let mut conn = self.conn();
                let key = self.keys.record(&position.run_id);
                async move { conn.hgetall(key).await }
            });
            return futures::future::try_join_all(reads).await;
        }
        let mut pipe = redis::pipe();
        for position in positions {
            pipe.hgetall(self.keys.record(&position.run_id));
        }
        pipe.query_async(&mut self.conn()).await
    }

    /// The next runs of the index below `below` (from the top for `None`), newest first, up to
    /// `chunk` of them plus those created in the same microsecond as `below`; and whether the
    /// index may hold more below them.
    ///
    /// The index is scored by creation time, and members with one score are ordered by id, as
    /// [`ListPosition`]s are. One round trip takes the rest of `below`'s microsecond (rarely
    /// more than itself) and the next `chunk` strictly older, so that a page never skips nor
    /// repeats a run, however runs are added or expire meanwhile.
    async fn index_below(
        &self,
        index: &str,
        below: Option<&ListPosition>,
        chunk: usize,
    ) -> Result<(Vec<ListPosition>, bool), RunError> {
        let count = isize::try_from(chunk).unwrap_or(isize::MAX);
        let (same_time, older): (Vec<ScoredId>, Vec<ScoredId>) = match below {
            None => {
                let older = self
                    .conn()
                    .zrevrangebyscore_limit_withscores(index, "+inf", "-inf", 0, count)
                    .await
                    .map_err(|e| self.unavailable(e))?;
                (Vec::new(), older)
            }
            Some(below) => {
                let mut pipe = redis::pipe();
                pipe.zrevrangebyscore_withscores(index, below.created_us, below.created_us)
                    .zrevrangebyscore_limit_withscores(
                        index,
                        format!("({}", below.created_us),
                        "-inf",
                        0,
                        count,
                    );
                pipe.query_async(&mut self.conn())
                    .await
                    .map_err(|e| self.unavailable(e))?
            }
        };
        let more = older.len() == chunk;
        let positions = same_time
            .into_iter()
            .filter(|(id, _)| below.is_none_or(|below| id.as_str() < &*below.run_id))
            .chain(older)
            .map(|(id, score)| ListPosition {
                // Scores are whole microseconds, exact in a double.
                created_us: score as u64,
                run_id: Arc::from(id),
            })
            .collect();
        Ok((positions, more))
    }

    async fn watch(
        self: &Arc<Self>,
        run_id: &str,
        from: ReadFrom,
        options: &RunOptions,
    ) -> Result<EventStream, RunError> {
        if let Some(record) = self.local.get(run_id) {
            return watch_local(&record, from, options, self.limits.event_buffer);
        }
        let record = self.existing(run_id).await?;
        let record = self.settle(run_id, record).await?;
        if let ReadFrom::After(after) = from {
            // The store may lag behind a cursor from the owner's stream while the run goes on;
            // once it ended, the store has every event.
            if record.state != RunState::Running && after > record.last_sequence {
                return Err(RunError::CursorPastEnd {
                    after,
                    last: record.last_sequence,
                });
            }
        }
        let log = follower::follow(self, run_id, &record).await?;
        Ok(EventStream::new(
            log,
            from,
            options,
            self.limits.event_buffer,
            None,
        ))
    }

    async fn cancel(self: &Arc<Self>, run_id: &str) -> Result<RunSnapshot, RunError> {
        if let Some(record) = self.local.get(run_id) {
            return Ok(cancel_local(&record).await);
        }
        let record = self.existing(run_id).await?;
        let record = self.settle(run_id, record).await?;
        if record.state != RunState::Running {
            return Ok(record.snapshot(run_id));
        }
        let cancels = self.keys.cancels(&record.owner);
        let mut call = scripts::REQUEST_CANCEL.prepare_invoke();
        call.key(self.keys.record(run_id));
        if !self.is_cluster() {
            call.key(&cancels);
        }
        let reply: String = call
            .arg(run_id)
            .arg(&record.owner)
            .arg(millis(RUNNING_TTL))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.unavailable(e))?;
        if reply == "requested" && self.is_cluster() {
            // The owner's cancel list is in the owner's slot, not the run's.
            let _: () = redis::pipe()
                .rpush(&cancels, run_id)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&cancels)
                .arg(millis(RUNNING_TTL))
                .ignore()
                .query_async(&mut self.conn())
                .await
                .map_err(|e| self.unavailable(e))?;
        }
        if reply == "requested" {
            // Follow the run until its owner ended it (or was declared lost), within bounds.
            let log = follower::follow(self, run_id, &record).await?;
            let _ = tokio::time::timeout(CANCEL_WAIT, log.wait_end()).await;
        }
        let record = self.existing(run_id).await?;
        Ok(self.settle(run_id, record).await?.snapshot(run_id))
    }
}

impl Shared {
    async fn claim(&self, claim: &KeyClaim) -> Result<ClaimOutcome, RunError> {
        let held: String = scripts::CLAIM
            .key(self.keys.claim(&claim.slot))
            .arg(claim.held.encode())
            // As long as a running run's keys; its end shortens it to the retention time.
            .arg(millis(RUNNING_TTL + self.limits.retention))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.unavailable(e))?;
        if held.is_empty() {
            return Ok(ClaimOutcome::Claimed);
        }
        HeldClaim::decode(&held)
            .map(ClaimOutcome::Held)
            .ok_or_else(|| {
                RunError::Internal(format!(
                    "the idempotency claim {} in the run store is not readable: {held:?}",
                    self.keys.claim(&claim.slot)
                ))
            })
    }

    async fn release(&self, slot: &str, held: &HeldClaim) -> Result<(), RunError> {
        let _: i64 = scripts::RELEASE
            .key(self.keys.claim(slot))
            .arg(held.encode())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }
}

impl RunStore for RedisStore {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn replica(&self) -> Option<&str> {
        Some(&self.shared.replica)
    }

    fn health(&self) -> watch::Receiver<bool> {
        self.shared.health.subscribe()
    }

    fn admit(&self) -> Result<(), RunError> {
        if *self.shared.health.borrow() {
            Ok(())
        } else {
            Err(self.shared.unavailable(self.shared.last_error()))
        }
    }

    fn local(&self) -> &RunTable {
        &self.shared.local
    }

    fn publish(&self, record: &Arc<RunRecord>) -> Option<Publication> {
        let (created_tx, created) = watch::channel(None);
        let (end_tx, end) = oneshot::channel();
        let span = tracing::info_span!("run store writer", run_id = %record.run_id());
        self.writers.spawn(
            writer::mirror(
                Arc::clone(&self.shared),
                Arc::clone(record),
                created_tx,
                end,
            )
            .instrument(span),
        );
        Some(Publication::new(
            created,
            end_tx,
            self.shared.health.subscribe(),
        ))
    }

    fn get<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<RunSnapshot, RunError>> {
        Box::pin(self.shared.get(run_id))
    }

    fn list<'a>(&'a self, filter: &'a RunFilter) -> BoxFuture<'a, Result<RunPage, RunError>> {
        Box::pin(self.shared.list(filter))
    }

    fn watch<'a>(
        &'a self,
        run_id: &'a str,
        from: ReadFrom,
        options: &'a RunOptions,
    ) -> BoxFuture<'a, Result<EventStream, RunError>> {
        Box::pin(self.shared.watch(run_id, from, options))
    }

    fn cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<RunSnapshot, RunError>> {
        Box::pin(self.shared.cancel(run_id))
    }

    fn shared_redis(&self) -> Option<super::SharedRedis> {
        // Webhooks share a single server's streams; in Redis Cluster each replica delivers its
        // own (docs/replicas.md, "Redis Cluster").
        match &self.shared.connector {
            connection::Connector::Server(client) => Some(super::SharedRedis {
                client: (**client).clone(),
                key_prefix: self.shared.keys.prefix().to_owned(),
                replica: self.shared.replica.clone(),
            }),
            connection::Connector::Cluster { .. } => None,
        }
    }

    fn claim<'a>(&'a self, claim: &'a KeyClaim) -> BoxFuture<'a, Result<ClaimOutcome, RunError>> {
        Box::pin(self.shared.claim(claim))
    }

    fn release<'a>(
        &'a self,
        slot: &'a str,
        held: &'a HeldClaim,
    ) -> BoxFuture<'a, Result<(), RunError>> {
        Box::pin(self.shared.release(slot, held))
    }

    fn respond<'a>(
        &'a self,
        run_id: &'a str,
        request_id: &'a str,
        reply: Reply,
    ) -> BoxFuture<'a, Result<RunSnapshot, RunError>> {
        Box::pin(self.shared.respond(run_id, request_id, reply))
    }

    fn close(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.writers.close();
            if tokio::time::timeout(grace, self.writers.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    "the run store did not take every run's end in time; other replicas will \
                     end those runs UNAVAILABLE"
                );
            }
            self.stop.cancel();
            self.shared.leave().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::engine::event::{EventKind, RunEvent};
    use crate::engine::runs::tests::{ListedRun, alone_and_crowded, id, pages_of};
    use crate::engine::{RunKind, RunStarted};
    use test_redis::RedisServer;
    use writer::Header;

    /// A store under `prefix` holding `runs`, recorded as their replica records them.
    async fn store_of(redis: &RedisServer, prefix: &str, runs: &[ListedRun]) -> Arc<RedisStore> {
        let config = StoreConfig {
            key_prefix: prefix.into(),
            replica_name: Some("w".into()),
            ..StoreConfig::redis(redis.url())
        };
        let store = RedisStore::open(&config, &Limits::default()).await.unwrap();
        for (id, belongs_to, seconds) in runs {
            let create_time = UNIX_EPOCH + Duration::from_secs(*seconds);
            let run_id: Arc<str> = Arc::from(id.as_str());
            let started = RunEvent::new(
                Arc::clone(&run_id),
                1,
                create_time,
                EventKind::Started(Box::new(RunStarted::new(RunKind::tool_run("t")))),
            );
            let header = Header {
                run_id,
                kind: RunKind::tool_run("t"),
                create_ns: codec::unix_nanos(create_time),
                belongs_to: (*belongs_to).to_owned(),
                started: codec::encode_event(&started).unwrap(),
                labels: Default::default(),
                claim_slot: String::new(),
            };
            store
                .shared
                .create(&header, 1, 0, writer::Recording::New)
                .await
                .unwrap();
        }
        store
    }

    async fn redis_pages(store: &RedisStore, belongs_to: &str) -> (Vec<String>, Vec<String>) {
        pages_of(belongs_to, |filter| async move {
            store.shared.list(&filter).await
        })
        .await
    }

    #[tokio::test]
    async fn page_tokens_tell_nothing_of_other_owners_runs_across_the_fleet() {
        let redis = RedisServer::start();
        let (alone, crowded) = alone_and_crowded();
        let alone = store_of(&redis, "alone:", &alone).await;
        let crowded = store_of(&redis, "crowded:", &crowded).await;
        let (ids, tokens) = redis_pages(&alone, "a").await;
        assert_eq!(ids, [id(3), id(2), id(1)]);
        assert_eq!(tokens.len(), 2);
        assert_eq!(redis_pages(&crowded, "a").await, (ids, tokens));
    }

    #[tokio::test]
    async fn runs_created_in_one_microsecond_are_paged_by_id_without_repeats() {
        let redis = RedisServer::start();
        // More than one chunk of the index, all in one microsecond.
        let runs: Vec<ListedRun> = (1..=40).map(|n| (id(n), "a", 7)).collect();
        let store = store_of(&redis, "same:", &runs).await;
        let (ids, _) = redis_pages(&store, "a").await;
        let newest_first: Vec<String> = (1..=40).rev().map(id).collect();
        assert_eq!(ids, newest_first);
    }
}
