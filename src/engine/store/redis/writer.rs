//! The writer of a run this replica executes: records the run, mirrors its log to Redis in
//! batches, and publishes its end.
//!
//! The writer reads the run's log like any reader (so a slow Redis never slows the run: the
//! writer falls behind and gets progress coalesced, and a gap when it fell further behind than
//! the log holds). Each batch is what the log holds when the previous write returned, so batches
//! grow with the rate of events and the round trip, and one script call writes each. Within a
//! batch only the newest progress of each call is written (the gap in `sequence` shows it); other
//! events are always written. The record holds the latest progress of each *live* call only: a
//! call that finishes (a sub-task whose progress reaches 1.0, a tool call at its
//! `tool_call_finished`; see [`crate::engine::log`]) has its field deleted by the same script
//! call that writes its last event, so a run's record does not grow with the calls it made. Each entry's id is its sequence, so a write that is retried after a
//! lost reply adds nothing twice.
//!
//! When Redis fails, the writer retries the same batch (with backoff) until it succeeds: the run
//! goes on meanwhile, its caller and local watchers see nothing of it, and the writer catches up
//! when Redis is back. If the store says the run already ended (another replica declared this one
//! lost while it could not reach Redis), the run ends here the same way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use redis::AsyncCommands;
use tokio::sync::{oneshot, watch};

use super::codec::{self, INPUT_FIELD, PROGRESS_FIELD};
use super::keys::write_entry_id;
use super::{RUNNING_TTL, Shared, millis, scripts};
use crate::engine::RunError;
use crate::engine::RunKind;
use crate::engine::creation::claim_slot;
use crate::engine::event::{EventKind, RunEvent, RunOptions};
use crate::engine::reader::{EventStream, ReadFrom};
use crate::engine::runs::{RunRecord, RunState};
use crate::engine::store::PublishEnd;

/// The most events one script call carries.
const MAX_BATCH: usize = 512;
/// The longest wait between two attempts at a write that failed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What identifies a run in its record.
pub(super) struct Header {
    pub(super) run_id: Arc<str>,
    pub(super) kind: RunKind,
    pub(super) create_ns: u64,
    /// Whom the run belongs to (an [`Owner`](crate::engine::Owner)'s name); empty for no one.
    pub(super) belongs_to: String,
    /// The started event, stored.
    pub(super) started: String,
    /// The run's labels.
    pub(super) labels: BTreeMap<String, String>,
    /// The slot of the run's idempotency key; empty for none.
    pub(super) claim_slot: String,
}

/// Records the run, then mirrors it until it ends. `created` learns whether the run could be
/// recorded (the run starts only if it was); `end` brings the run's end.
pub(super) async fn mirror(
    shared: Arc<Shared>,
    record: Arc<RunRecord>,
    created: watch::Sender<Option<Result<(), RunError>>>,
    end: oneshot::Receiver<PublishEnd>,
) {
    let started_event = record.log.lock().started.clone();
    let (labels, claim_slot) = match started_event.as_deref().map(|event| &event.kind) {
        Some(EventKind::Started(started)) if !started.idempotency_key.is_empty() => (
            started.labels.clone(),
            claim_slot(record.owner.as_ref(), &started.idempotency_key),
        ),
        Some(EventKind::Started(started)) => (started.labels.clone(), String::new()),
        _ => (BTreeMap::new(), String::new()),
    };
    let Some(started) = started_event.as_deref().and_then(codec::encode_event) else {
        created.send_replace(Some(Err(RunError::Internal(
            "the run has no started event to record".into(),
        ))));
        return;
    };
    let header = Header {
        run_id: Arc::clone(record.run_id()),
        kind: record.kind.clone(),
        create_ns: codec::unix_nanos(record.create_time),
        belongs_to: record
            .owner
            .as_ref()
            .map_or_else(String::new, |owner| owner.as_str().to_owned()),
        started,
        labels,
        claim_slot,
    };
    match shared.create(&header, 1, 0, Recording::New).await {
        Ok(true) => {}
        Ok(false) => {
            // At the owner's limit across the fleet: the run ends before it starts.
            created.send_replace(Some(Err(RunError::OwnerBusy {
                owner: header.belongs_to.clone(),
                limit: shared.limits.max_runs_per_owner.unwrap_or_default(),
            })));
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot record the run in the run store");
            created.send_replace(Some(Err(shared.unavailable(error))));
            return;
        }
    }
    created.send_replace(Some(Ok(())));
    let events = EventStream::new(
        Arc::clone(&record.log),
        ReadFrom::After(1),
        &RunOptions::default(),
        shared.limits.event_buffer,
        None,
    );
    Writer {
        shared,
        record,
        header,
        events,
        written: 1,
    }
    .run(end)
    .await;
}

struct Writer {
    shared: Arc<Shared>,
    record: Arc<RunRecord>,
    header: Header,
    /// The writer's reader of the run's log.
    events: EventStream,
    /// The last sequence stored.
    written: u64,
}

/// Events to write together.
#[derive(Default)]
struct Batch {
    /// Sequence and stored event; `None` where newer progress of the same call replaced it.
    entries: Vec<Option<(u64, String)>>,
    /// The newest progress of each live call: its index in `entries`.
    progress: HashMap<Arc<str>, usize>,
    /// The calls that finished in this batch (and did not report again after): their progress
    /// fields leave the record.
    finished: HashSet<Arc<str>>,
    /// The input requests made in this batch and still open: their index in `entries`.
    inputs_open: HashMap<Arc<str>, usize>,
    /// The input requests resolved in this batch: their fields leave the record.
    inputs_resolved: HashSet<Arc<str>>,
    last_sequence: u64,
    /// Events up to this sequence left the log before the writer read them.
    evicted_through: u64,
}

impl Batch {
    fn add(&mut self, event: &RunEvent) {
        if let EventKind::Gap { to, .. } = event.kind {
            self.evicted_through = self.evicted_through.max(to);
            self.last_sequence = self.last_sequence.max(to);
            return;
        }
        let Some(stored) = codec::encode_event(event) else {
            return;
        };
        self.last_sequence = event.sequence;
        match &event.kind {
            EventKind::Progress { call, .. } => {
                let index = self.entries.len();
                if let Some(previous) = self.progress.insert(Arc::clone(&call.call_id), index) {
                    self.entries[previous] = None;
                }
                // The log marks a sub-task's last progress final as it logs it: the call is
                // folded into its parent, and its event is still written to the stream.
                if event.is_final() {
                    self.progress.remove(&call.call_id);
                    self.finished.insert(Arc::clone(&call.call_id));
                } else {
                    self.finished.remove(&call.call_id);
                }
            }
            EventKind::ToolCallFinished { call, .. } => {
                self.progress.remove(&call.call_id);
                self.finished.insert(Arc::clone(&call.call_id));
            }
            EventKind::InputRequested(request) => {
                self.inputs_open
                    .insert(Arc::clone(&request.request_id), self.entries.len());
            }
            EventKind::InputResolved { request_id, .. } => {
                self.inputs_open.remove(request_id);
                self.inputs_resolved.insert(Arc::clone(request_id));
            }
            _ => {}
        }
        self.entries.push(Some((event.sequence, stored)));
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn first_sequence(&self) -> Option<u64> {
        self.entries.iter().flatten().map(|(s, _)| *s).next()
    }
}

/// How a run ends in its record.
struct EndWrite {
    state: RunState,
    end_ns: u64,
    end_ms: u64,
    result: String,
    error: String,
}

/// What the store answered a write.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// Written; how many entries were new (a replayed entry is refused).
    Written(u64),
    /// The record is gone (the store lost it, or it expired).
    Missing,
    /// The run already ended in the store; its error.
    Ended(String),
}

impl Writer {
    async fn run(mut self, mut end: oneshot::Receiver<PublishEnd>) {
        // Keeps a silent run's keys from expiring.
        let mut refresh = tokio::time::interval(RUNNING_TTL / 4);
        refresh.tick().await;
        // When the store comes back, a silent run checks its record at once: the store may have
        // come back empty (the run is recorded again), or the fleet may have taken this replica
        // for lost meanwhile (the run ends here the same way).
        let mut store_health = self.shared.health.subscribe();
        store_health.mark_unchanged();
        loop {
            tokio::select! {
                biased;
                request = &mut end => {
                    if let Ok(request) = request {
                        self.finish(request).await;
                    }
                    return;
                }
                item = self.events.next() => {
                    let Some(Ok(event)) = item else {
                        // The log ended without an end to publish (cannot happen: the run
                        // publishes before it ends); wait for one anyway.
                        if let Ok(request) = end.await {
                            self.finish(request).await;
                        }
                        return;
                    };
                    let mut batch = Batch::default();
                    batch.add(&event);
                    self.fill(&mut batch);
                    if !self.store(batch, None).await {
                        return;
                    }
                }
                _ = refresh.tick() => {
                    if !self.store(Batch::default(), None).await {
                        return;
                    }
                }
                Ok(()) = store_health.changed() => {
                    let reachable = *store_health.borrow_and_update();
                    if reachable && !self.store(Batch::default(), None).await {
                        return;
                    }
                }
            }
        }
    }

    /// Adds what the log holds now, up to a batch.
    fn fill(&mut self, batch: &mut Batch) {
        while batch.len() < MAX_BATCH {
            match self.events.next().now_or_never() {
                Some(Some(Ok(event))) if !matches!(event.kind, EventKind::Result(_)) => {
                    batch.add(&event)
                }
                _ => break,
            }
        }
    }

    /// Writes the run's last events and its end.
    async fn finish(&mut self, request: PublishEnd) {
        // The run is sealed: everything it logged is in the log now.
        let mut batch = Batch::default();
        loop {
            self.fill(&mut batch);
            if batch.len() < MAX_BATCH {
                break;
            }
            if !self.store(std::mem::take(&mut batch), None).await {
                let _ = request.done.send(());
                return;
            }
        }
        let end = match &request.outcome {
            Ok(value) => {
                batch.add(&RunEvent::new(
                    Arc::clone(&self.header.run_id),
                    request.sequence,
                    request.timestamp,
                    EventKind::Result(value.clone()),
                ));
                EndWrite {
                    state: RunState::Succeeded,
                    end_ns: codec::unix_nanos(request.timestamp),
                    end_ms: codec::unix_millis(request.timestamp),
                    result: serde_json::to_string(value).unwrap_or_else(|_| "null".into()),
                    error: String::new(),
                }
            }
            Err(error) => {
                batch.last_sequence = batch.last_sequence.max(request.sequence - 1);
                EndWrite {
                    state: if error.is_cancellation() {
                        RunState::Cancelled
                    } else {
                        RunState::Failed
                    },
                    end_ns: codec::unix_nanos(request.timestamp),
                    end_ms: codec::unix_millis(request.timestamp),
                    result: String::new(),
                    error: codec::encode_error(error),
                }
            }
        };
        self.store(batch, Some(&end)).await;
        let _ = request.done.send(());
    }

    /// Writes `batch` (and the end, if given), retrying until the store takes it. Returns false
    /// when the run already ended in the store: the run then ends here the same way.
    async fn store(&mut self, batch: Batch, end: Option<&EndWrite>) -> bool {
        let mut delay = Duration::from_millis(50);
        let mut failing = false;
        loop {
            match self.shared.write(&self.header, &batch, end).await {
                Ok(Reply::Written(_)) => {
                    if failing {
                        tracing::info!("the run store took the run's events again");
                    }
                    self.written = self.written.max(batch.last_sequence);
                    return true;
                }
                Ok(Reply::Ended(error)) => {
                    let error = if error.is_empty() {
                        RunError::ReplicaLost {
                            replica: self.shared.replica.clone(),
                        }
                    } else {
                        codec::decode_error(&error)
                    };
                    tracing::warn!(%error, "the run store ended this run while it went on here");
                    self.record.end_elsewhere(error);
                    return false;
                }
                Ok(Reply::Missing) => {
                    // The store lost the run (restarted empty, or its keys expired): record it
                    // again; the events it held before this batch are gone.
                    let kept_from = batch.first_sequence().unwrap_or(self.written + 1);
                    let gone = kept_from.saturating_sub(1).max(1);
                    tracing::warn!("the run store lost this run's record; recording it again");
                    let again = self
                        .shared
                        .create(&self.header, gone, gone, Recording::Again)
                        .await;
                    if let Err(error) = again {
                        tracing::debug!(%error, "cannot record the run again yet");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(MAX_RETRY_DELAY);
                    }
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "cannot write the run's events to the run store; retrying");
                        failing = true;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }
}

/// Whether a run is recorded for the first time, or again after the store lost it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recording {
    /// A new run: refused when its owner has its limit of runs in progress.
    New,
    /// A run going on already: counted, never refused.
    Again,
}

impl Shared {
    /// Records a run (again, with `last_sequence` and `evicted_through`, after the store lost it).
    /// Returns false, recording nothing, when the run's owner has its limit of runs in
    /// progress across the fleet (`[auth] max_runs_per_owner`; only for a new run).
    pub(super) async fn create(
        &self,
        header: &Header,
        last_sequence: u64,
        evicted_through: u64,
        recording: Recording,
    ) -> redis::RedisResult<bool> {
        let run_id = &*header.run_id;
        // A owner's runs are counted in the store, so that the limit holds fleet-wide.
        let limit = match (self.limits.max_runs_per_owner, recording) {
            (None, _) => String::new(),
            _ if header.belongs_to.is_empty() => String::new(),
            (Some(limit), Recording::New) => limit.to_string(),
            (Some(_), Recording::Again) => "0".to_owned(),
        };
        if self.is_cluster() {
            return self
                .create_in_cluster(header, last_sequence, evicted_through, &limit)
                .await;
        }
        let mut call = scripts::CREATE.prepare_invoke();
        call.key(self.keys.record(run_id))
            .key(self.keys.events(run_id))
            .key(self.keys.index())
            .key(self.keys.replica_runs(&self.replica))
            .key(self.keys.owned_runs(&header.belongs_to));
        for (key, value) in &header.labels {
            call.key(self.keys.label(key, value));
        }
        let reply: String = call
            .arg(run_id)
            .arg(&self.replica)
            // The fields `tool` (empty for an agent run) and `agent`, as the first releases
            // wrote them.
            .arg(header.kind.tool_name())
            .arg(if header.kind.is_agent() { "1" } else { "0" })
            .arg(header.create_ns)
            // Whom the run belongs to (empty for no one), in the field `owner`.
            .arg(&header.belongs_to)
            .arg(&header.started)
            .arg(millis(RUNNING_TTL))
            .arg(self.index_ttl())
            .arg(last_sequence)
            .arg(evicted_through)
            // The index orders runs by creation time in µs (exact in a double, which the score
            // is, until the year 2255), as `ListPosition` does.
            .arg(header.create_ns / 1000)
            .arg(limit)
            .arg(self.claim_key(header))
            .arg(self.label_horizon(header))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(reply != "busy")
    }

    /// The key of the run's idempotency claim, recorded with it ('' for none).
    fn claim_key(&self, header: &Header) -> String {
        if header.claim_slot.is_empty() {
            String::new()
        } else {
            self.keys.claim(&header.claim_slot)
        }
    }

    /// The creation time (µs) before which label index entries are of expired runs: a running
    /// run's keys expire a day after its last write, a finished one's after the retention time.
    fn label_horizon(&self, header: &Header) -> u64 {
        (header.create_ns / 1000)
            .saturating_sub(millis(RUNNING_TTL + self.limits.retention).saturating_mul(1000))
    }

    /// [`Shared::create`] in Redis Cluster, where the run's keys, its owner's set, its
    /// replica's set and the index are in different slots: the owner's admission first (its
    /// own script, idempotent by run id) and the run joining its replica's set (so that the
    /// replica's death is noticed for it, whatever happens next); then the run's record and
    /// stream (one script, on the run's slot); then the index. The caller learns the run id only
    /// after all three. A recording that fails gives the owner's place back.
    async fn create_in_cluster(
        &self,
        header: &Header,
        last_sequence: u64,
        evicted_through: u64,
        limit: &str,
    ) -> redis::RedisResult<bool> {
        let run_id = &*header.run_id;
        let owned = self.keys.owned_runs(&header.belongs_to);
        let mine = self.keys.replica_runs(&self.replica);
        let (mut first, mut second) = (self.conn(), self.conn());
        let admitted = async {
            if limit.is_empty() {
                return Ok("admitted".to_owned());
            }
            scripts::ADMIT
                .key(&owned)
                .arg(run_id)
                .arg(limit)
                .arg(self.index_ttl())
                .invoke_async::<String>(&mut first)
                .await
        };
        let mut pipe = redis::pipe();
        let joined = pipe
            .sadd(&mine, run_id)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&mine)
            .arg(self.index_ttl())
            .ignore()
            .query_async::<()>(&mut second);
        let (admitted, ()) = tokio::try_join!(admitted, joined)?;
        if admitted == "busy" {
            let _: redis::RedisResult<()> = self.conn().srem(&mine, run_id).await;
            return Ok(false);
        }
        let recorded: redis::RedisResult<String> = scripts::CREATE
            .key(self.keys.record(run_id))
            .key(self.keys.events(run_id))
            .arg(run_id)
            .arg(&self.replica)
            .arg(header.kind.tool_name())
            .arg(if header.kind.is_agent() { "1" } else { "0" })
            .arg(header.create_ns)
            .arg(&header.belongs_to)
            .arg(&header.started)
            .arg(millis(RUNNING_TTL))
            .arg(self.index_ttl())
            .arg(last_sequence)
            .arg(evicted_through)
            .arg(header.create_ns / 1000)
            // The owner was admitted above.
            .arg("")
            .arg(self.claim_key(header))
            .arg(self.label_horizon(header))
            .invoke_async(&mut self.conn())
            .await;
        if let Err(error) = recorded {
            if !limit.is_empty() {
                let _: redis::RedisResult<()> = self.conn().srem(&owned, run_id).await;
            }
            return Err(error);
        }
        let index = self.keys.index();
        let _: () = redis::pipe()
            .zadd(&index, run_id, header.create_ns / 1000)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(self.index_ttl())
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        // Each label's index is a key of its own slot: one small pipeline each.
        for (key, value) in &header.labels {
            let label = self.keys.label(key, value);
            let _: () = redis::pipe()
                .zadd(&label, run_id, header.create_ns / 1000)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&label)
                .arg("-inf")
                .arg(format!("({}", self.label_horizon(header)))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&label)
                .arg(self.index_ttl())
                .ignore()
                .query_async(&mut self.conn())
                .await?;
        }
        Ok(true)
    }

    /// Writes one batch of a run's events, with its end when given, in one script call.
    async fn write(
        self: &Arc<Self>,
        header: &Header,
        batch: &Batch,
        end: Option<&EndWrite>,
    ) -> redis::RedisResult<Reply> {
        let run_id = &*header.run_id;
        let script = if end.is_some() {
            &*scripts::FINISH
        } else {
            &*scripts::APPEND
        };
        let mut keys = vec![self.keys.record(run_id), self.keys.events(run_id)];
        if end.is_some() && !self.is_cluster() {
            keys.extend([
                self.keys.index(),
                self.keys.finished(),
                self.keys.replica_runs(&self.replica),
                self.keys.owned_runs(&header.belongs_to),
            ]);
        }
        // The script's call, built in one buffer: a batch is hundreds of arguments, and a
        // `ScriptInvocation` would hold each in a buffer of its own before copying it.
        let mut call = redis::cmd("EVALSHA");
        call.arg(script.get_hash()).arg(keys.len()).arg(&keys);
        let ttl = match end {
            Some(_) => millis(self.limits.retention),
            None => millis(RUNNING_TTL),
        };
        call.arg(&self.replica)
            .arg(self.limits.max_events_per_run)
            .arg(ttl)
            .arg(batch.last_sequence)
            .arg(batch.evicted_through);
        if let Some(end) = end {
            call.arg(codec::state_name(end.state))
                .arg(end.end_ns)
                .arg(&end.result)
                .arg(&end.error)
                .arg(self.limits.max_runs)
                .arg(self.keys.prefix())
                .arg(run_id)
                .arg(self.index_ttl())
                .arg(end.end_ms);
        }
        let entries: Vec<&(u64, String)> = batch.entries.iter().flatten().collect();
        call.arg(entries.len());
        let mut id = String::new();
        for (sequence, stored) in &entries {
            write_entry_id(&mut id, *sequence);
            call.arg(id.as_str()).arg(stored.as_str());
        }
        call.arg(batch.finished.len() + batch.inputs_resolved.len());
        for call_id in &batch.finished {
            call.arg(format!("{PROGRESS_FIELD}{call_id}"));
        }
        for request_id in &batch.inputs_resolved {
            call.arg(format!("{INPUT_FIELD}{request_id}"));
        }
        for (call_id, index) in &batch.progress {
            if let Some(Some((_, stored))) = batch.entries.get(*index) {
                call.arg(format!("{PROGRESS_FIELD}{call_id}")).arg(stored);
            }
        }
        for (request_id, index) in &batch.inputs_open {
            if let Some(Some((_, stored))) = batch.entries.get(*index) {
                call.arg(format!("{INPUT_FIELD}{request_id}")).arg(stored);
            }
        }
        let reply: Vec<String> = scripts::invoke(script, &call, &mut self.conn()).await?;
        let reply = match reply.first().map(String::as_str) {
            Some("missing") => Reply::Missing,
            Some("ended") => Reply::Ended(reply.get(1).cloned().unwrap_or_default()),
            _ => Reply::Written(reply.get(1).and_then(|n| n.parse().ok()).unwrap_or(0)),
        };
        if let (Some(end), Reply::Written(_), true) = (end, &reply, self.is_cluster()) {
            self.end_in_fleet(run_id, &header.belongs_to, end.end_ms)
                .await;
        }
        Ok(reply)
    }

    /// Redis Cluster: the end of a run this replica ended, outside the run's slot. The run has
    /// ended already (its end is in its record): this only frees its places and files it, so
    /// when the store does not take it at once it is retried in the background until it does
    /// (or the store closes; then, should this replica die, the sweep of its runs does it).
    async fn end_in_fleet(self: &Arc<Self>, run_id: &str, belongs_to: &str, end_ms: u64) {
        let filed = self
            .record_end_in_fleet(run_id, &self.replica, belongs_to, end_ms)
            .await;
        if filed.is_ok() {
            return;
        }
        let (shared, run_id, belongs_to) =
            (Arc::clone(self), run_id.to_owned(), belongs_to.to_owned());
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                let done = shared
                    .record_end_in_fleet(&run_id, &shared.replica, &belongs_to, end_ms)
                    .await;
                let Err(error) = done else { return };
                tracing::debug!(%error, run_id, "cannot file the run's end in the fleet yet");
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        });
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::SystemTime;

    use redis::AsyncCommands;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::engine::RunStarted;
    use crate::engine::event::CallTag;
    use crate::engine::log::RunLog;
    use crate::engine::store::redis::RedisStore;
    use crate::engine::store::redis::test_redis::RedisServer;
    use crate::engine::{Limits, StoreConfig};
    use crate::tools::ProgressUpdate;

    fn message(sequence: u64, text: &str) -> RunEvent {
        RunEvent::new(
            "run-1".into(),
            sequence,
            SystemTime::now(),
            EventKind::Message(text.into()),
        )
    }

    /// A store on `redis` (replica `w`) with run `run-1` recorded; the store and the run's header.
    pub(super) async fn recorded_run(redis: &RedisServer) -> (Arc<RedisStore>, Header) {
        let config = StoreConfig {
            key_prefix: "unit:".into(),
            replica_name: Some("w".into()),
            ..StoreConfig::redis(redis.url())
        };
        let store = RedisStore::open(&config, &Limits::default()).await.unwrap();
        let log = RunLog::new("run-1".into(), 8, 100);
        log.push(EventKind::Started(Box::new(RunStarted::new(
            RunKind::tool_run("t"),
        ))))
        .unwrap();
        let record =
            store
                .shared
                .local
                .insert(RunKind::tool_run("t"), None, log, CancellationToken::new());
        let header = Header {
            run_id: Arc::clone(record.run_id()),
            kind: RunKind::tool_run("t"),
            create_ns: 1,
            belongs_to: String::new(),
            started: codec::encode_event(record.log.lock().started.as_deref().unwrap()).unwrap(),
            labels: BTreeMap::new(),
            claim_slot: String::new(),
        };
        store
            .shared
            .create(&header, 1, 0, Recording::New)
            .await
            .unwrap();
        (store, header)
    }

    #[tokio::test]
    async fn a_batch_written_twice_is_stored_once_and_a_run_ends_once() {
        let redis = RedisServer::start();
        let (store, header) = recorded_run(&redis).await;
        let shared = &store.shared;
        // A create retried after a lost reply is no second run.
        shared.create(&header, 1, 0, Recording::New).await.unwrap();
        let index: usize = shared.conn().zcard(shared.keys.index()).await.unwrap();
        assert_eq!(index, 1);

        let mut batch = Batch::default();
        for (sequence, text) in [(2, "a"), (3, "b"), (4, "c")] {
            batch.add(&message(sequence, text));
        }
        let written = shared.write(&header, &batch, None).await.unwrap();
        assert_eq!(written, Reply::Written(3));
        // The same batch again (its reply was lost, say): nothing is added twice.
        let again = shared.write(&header, &batch, None).await.unwrap();
        assert_eq!(again, Reply::Written(0));
        // An older batch replayed after a newer one: refused too, and nothing goes backwards.
        let mut older = Batch::default();
        older.add(&message(2, "a"));
        assert_eq!(
            shared.write(&header, &older, None).await.unwrap(),
            Reply::Written(0)
        );
        let events = shared.keys.events("run-1");
        let length: usize = shared.conn().xlen(&events).await.unwrap();
        assert_eq!(length, 4, "started and three messages");
        let last: u64 = shared
            .conn()
            .hget(shared.keys.record("run-1"), "last_sequence")
            .await
            .unwrap();
        assert_eq!(last, 4);

        // The end is written once; after it nothing is.
        let end = EndWrite {
            state: RunState::Succeeded,
            end_ns: 2,
            end_ms: 0,
            result: "7".into(),
            error: String::new(),
        };
        let mut last_batch = Batch::default();
        last_batch.add(&RunEvent::new(
            "run-1".into(),
            5,
            SystemTime::now(),
            EventKind::Result(serde_json::json!(7)),
        ));
        let ended = shared
            .write(&header, &last_batch, Some(&end))
            .await
            .unwrap();
        assert_eq!(ended, Reply::Written(1));
        let twice = shared
            .write(&header, &last_batch, Some(&end))
            .await
            .unwrap();
        assert!(matches!(twice, Reply::Ended(_)), "{twice:?}");
        let late = shared.write(&header, &batch, None).await.unwrap();
        assert!(matches!(late, Reply::Ended(_)), "{late:?}");
        assert!(!shared.declare_lost("run-1", "w").await.unwrap());
        let stored = shared.read_record("run-1").await.unwrap().unwrap();
        assert_eq!(stored.state, RunState::Succeeded);
        let snapshot = stored.snapshot("run-1");
        assert_eq!(snapshot.last_sequence, 5);
        assert_eq!(snapshot.result, Some(serde_json::json!(7)));
    }

    fn tool_call(call_id: &str) -> Arc<CallTag> {
        Arc::new(CallTag::call(call_id, "t"))
    }

    fn progress_of(call: &Arc<CallTag>, sequence: u64, fraction: f64) -> RunEvent {
        RunEvent::new(
            "run-1".into(),
            sequence,
            SystemTime::now(),
            EventKind::Progress {
                call: Arc::clone(call),
                update: ProgressUpdate {
                    fraction: Some(fraction),
                    ..ProgressUpdate::default()
                },
                eta_seconds: None,
            },
        )
    }

    #[tokio::test]
    async fn a_tool_call_s_progress_leaves_the_record_when_the_call_finishes() {
        let redis = RedisServer::start();
        let (store, header) = recorded_run(&redis).await;
        let shared = &store.shared;
        let progress_fields = || async {
            let fields: Vec<String> = shared
                .conn()
                .hkeys(shared.keys.record("run-1"))
                .await
                .unwrap();
            let mut progress: Vec<String> = fields
                .into_iter()
                .filter(|field| field.starts_with(PROGRESS_FIELD))
                .collect();
            progress.sort();
            progress
        };
        let (first, second) = (tool_call("c1"), tool_call("c2"));
        let mut batch = Batch::default();
        batch.add(&progress_of(&first, 2, 0.5));
        batch.add(&progress_of(&second, 3, 0.5));
        shared.write(&header, &batch, None).await.unwrap();
        assert_eq!(progress_fields().await, ["p:c1", "p:c2"]);

        // The first call finishes in a later batch: its field goes, the other call's stays.
        let mut batch = Batch::default();
        batch.add(&RunEvent::new(
            "run-1".into(),
            4,
            SystemTime::now(),
            EventKind::ToolCallFinished {
                call: CallTag::clone(&first),
                outcome: Ok(serde_json::json!(1)),
            },
        ));
        batch.add(&progress_of(&second, 5, 0.75));
        let written = shared.write(&header, &batch, None).await.unwrap();
        assert_eq!(
            written,
            Reply::Written(2),
            "the finish is in the stream too"
        );
        assert_eq!(progress_fields().await, ["p:c2"]);
    }

    fn asked(sequence: u64, request_id: &str) -> RunEvent {
        RunEvent::new(
            "run-1".into(),
            sequence,
            SystemTime::now(),
            EventKind::InputRequested(Arc::new(crate::engine::InputRequest {
                request_id: request_id.into(),
                call: Arc::new(CallTag::top()),
                prompt: "Go?".into(),
                schema: None,
                kind: crate::tools::InputKind::Input,
                data: None,
                expire_time: None,
            })),
        )
    }

    #[tokio::test]
    async fn a_lost_owner_s_open_requests_are_cancelled_once_before_the_run_s_end() {
        let redis = RedisServer::start();
        let (store, header) = recorded_run(&redis).await;
        let shared = &store.shared;
        let mut batch = Batch::default();
        batch.add(&asked(2, "input-1"));
        batch.add(&asked(3, "input-2"));
        shared.write(&header, &batch, None).await.unwrap();
        let read = || async {
            codec::StoredRecord::parse(
                shared
                    .conn()
                    .hgetall(shared.keys.record("run-1"))
                    .await
                    .unwrap(),
            )
            .unwrap()
        };
        let stale = read().await;
        assert_eq!(stale.open_requests("run-1").len(), 2);
        // The owner writes after the record was read: the end waits for a fresh read.
        let mut late = Batch::default();
        late.add(&message(4, "still here"));
        shared.write(&header, &late, None).await.unwrap();
        // Then the run is taken for one of a replica without a lease (this store's renews).
        let _: () = shared
            .conn()
            .hset(shared.keys.record("run-1"), "owner", "gone")
            .await
            .unwrap();
        let now = SystemTime::now();
        let changed = shared
            .end_as_lost("run-1", "gone", Some(&stale), "", now)
            .await
            .unwrap();
        assert_eq!(changed, "changed");
        let fresh = read().await;
        let lost = shared
            .end_as_lost("run-1", "gone", Some(&fresh), "", now)
            .await
            .unwrap();
        assert_eq!(lost, "lost");
        // Done once: a second try finds the run ended.
        let again = shared
            .end_as_lost("run-1", "gone", Some(&fresh), "", now)
            .await
            .unwrap();
        assert_eq!(again, "ended");

        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(shared.keys.events("run-1"))
            .arg("(4-0")
            .arg("+")
            .query_async(&mut shared.conn())
            .await
            .unwrap();
        let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["5-0", "6-0", "6-1"]);
        let run_id: Arc<str> = Arc::from("run-1");
        let resolved: Vec<(u64, Arc<str>)> = entries[..2]
            .iter()
            .map(|(_, fields)| {
                let event = codec::decode_event(&run_id, &fields["e"]).unwrap();
                match event.kind {
                    EventKind::InputResolved {
                        request_id,
                        outcome: crate::engine::InputOutcome::Cancelled,
                    } => (event.sequence, request_id),
                    other => panic!("not a cancellation: {other:?}"),
                }
            })
            .collect();
        assert_eq!(
            resolved,
            [(5, Arc::from("input-1")), (6, Arc::from("input-2"))]
        );
        assert!(
            matches!(
                codec::decode_error(&entries[2].1["end"]),
                RunError::ReplicaLost { replica } if replica == "gone"
            ),
            "{entries:?}"
        );
        let ended = read().await;
        assert_eq!(ended.state, RunState::Failed);
        assert_eq!(ended.last_sequence, 6);
        assert!(ended.inputs.is_empty(), "{:?}", ended.inputs);
        assert!(ended.snapshot("run-1").pending_inputs.is_empty());
    }
}

#[cfg(test)]
mod backlog_tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::engine::HeldPartial;
    use crate::engine::event::CallTag;
    use crate::engine::store::redis::follower;
    use crate::engine::store::redis::test_redis::RedisServer;
    use crate::tools::PartialOutput;

    fn item(sequence: u64) -> RunEvent {
        RunEvent::new(
            "run-1".into(),
            sequence,
            SystemTime::now(),
            EventKind::PartialResult {
                call: Arc::new(CallTag::top()),
                output: HeldPartial::new(PartialOutput {
                    key: "items".into(),
                    value: serde_json::json!({ "item": sequence }),
                    append: true,
                }),
            },
        )
    }

    /// Writes the partial results `sequences` in one batch.
    async fn write_items(
        shared: &Arc<Shared>,
        header: &Header,
        sequences: std::ops::RangeInclusive<u64>,
    ) {
        let mut batch = Batch::default();
        for sequence in sequences {
            batch.add(&item(sequence));
        }
        assert!(matches!(
            shared.write(header, &batch, None).await.unwrap(),
            Reply::Written(_)
        ));
    }

    /// The items the log holds, in its order.
    fn items_held(log: &crate::engine::log::RunLog) -> Vec<u64> {
        log.lock()
            .events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::PartialResult { output, .. } => {
                    assert_eq!(output.value()["item"], event.sequence as f64, "{event:?}");
                    Some(event.sequence)
                }
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_follower_reads_a_backlog_of_several_reads_in_order_then_follows_one_live() {
        let redis = RedisServer::start();
        let (store, header) = super::tests::recorded_run(&redis).await;
        let shared = &store.shared;
        // More partial results than one read takes, written before anyone follows the run.
        let backlog = 2 * follower::CHUNK as u64 + 10;
        write_items(shared, &header, 2..=backlog / 2).await;
        write_items(shared, &header, backlog / 2 + 1..=backlog + 1).await;
        let record = shared.read_record("run-1").await.unwrap().unwrap();
        let log = follower::follow(shared, "run-1", &record).await.unwrap();
        assert_eq!(items_held(&log), (2..=backlog + 1).collect::<Vec<_>>());

        // Then as many again while it follows live, in batches of the writer's size, and the end.
        let mut next = backlog + 2;
        while next <= 2 * backlog + 1 {
            let last = (next + MAX_BATCH as u64 - 1).min(2 * backlog + 1);
            write_items(shared, &header, next..=last).await;
            next = last + 1;
        }
        let mut last_batch = Batch::default();
        last_batch.add(&RunEvent::new(
            "run-1".into(),
            next,
            SystemTime::now(),
            EventKind::Result(serde_json::json!("done")),
        ));
        let end = EndWrite {
            state: RunState::Succeeded,
            end_ns: 2,
            end_ms: 0,
            result: "\"done\"".into(),
            error: String::new(),
        };
        shared
            .write(&header, &last_batch, Some(&end))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), log.wait_end())
            .await
            .expect("the follower read the run's end");
        assert_eq!(items_held(&log), (2..=2 * backlog + 1).collect::<Vec<_>>());
        assert_eq!(
            log.lock().result().map(|event| event.sequence),
            Some(next),
            "the result follows the last partial result"
        );
    }
}
