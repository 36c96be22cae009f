//! Following a run that executes on another replica: its events, read from Redis into a log of
//! this replica, which every watcher of the run here reads with its own cursor (coalescing,
//! throttling, gaps and heartbeats work as for a local run).
//!
//! A follower first replays the run's stream (XRANGE, in chunks), then follows it live with
//! XREAD BLOCK on a connection of its own (a blocked connection serves nobody else). The stream
//! holds at most `max_events_per_run` entries: when the oldest are gone (the record's
//! `evicted_through` says how far), the follower's log says so, and its readers get a `Gap`.
//! A follower ends with the run (its `result` entry, or its `end` entry with the error); it stops
//! when its last watcher left; when Redis fails, its watchers end with UNAVAILABLE naming the
//! store. While the run is silent, the follower checks the owner's lease and ends the run as lost
//! when it lapsed.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use super::Shared;
use super::codec::{self, StoredRecord};
use super::keys::entry_sequence;
use crate::engine::RunError;
use crate::engine::event::EventKind;
use crate::engine::log::RunLog;
use crate::engine::runs::RunState;

/// Entries read per call. A read of a run far behind its owner (a watcher from 0, a burst of
/// partial results) takes this many per round trip; an entry is ~100 bytes, so a reply stays
/// within a few hundred KB.
pub(super) const CHUNK: usize = 2048;

/// A stream entry as the follower uses it: its id, and what it holds.
struct Entry {
    id: String,
    stored: Stored,
}

/// What an entry holds: an event (field `e`), a failed run's end (field `end`, its error), or
/// neither (a field a later release may add; skipped).
enum Stored {
    Event(Vec<u8>),
    End(Vec<u8>),
    Other,
}

/// The error of a reply to a read of a run's events that is not entries.
fn unexpected() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "the run store answered a read of a run's events with something else than entries",
    ))
}

/// The entries of an XRANGE reply (or of one stream of an XREAD reply), taken from the reply as
/// it was read: no map, and no copy of the payloads.
fn entries(reply: redis::Value) -> redis::RedisResult<Vec<Entry>> {
    let list = match reply {
        redis::Value::Nil => return Ok(Vec::new()),
        redis::Value::Array(list) => list,
        _ => return Err(unexpected()),
    };
    let mut read = Vec::with_capacity(list.len());
    for entry in list {
        let redis::Value::Array(pair) = entry else {
            return Err(unexpected());
        };
        let mut pair = pair.into_iter();
        let (Some(redis::Value::BulkString(id)), Some(fields)) = (pair.next(), pair.next()) else {
            return Err(unexpected());
        };
        let id = String::from_utf8(id).map_err(|_| unexpected())?;
        let fields = match fields {
            redis::Value::Array(fields) => fields,
            redis::Value::Map(fields) => fields.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => return Err(unexpected()),
        };
        let mut stored = Stored::Other;
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            let (redis::Value::BulkString(name), redis::Value::BulkString(value)) = (name, value)
            else {
                continue;
            };
            match name.as_slice() {
                b"e" => stored = Stored::Event(value),
                b"end" => stored = Stored::End(value),
                _ => {}
            }
        }
        read.push(Entry { id, stored });
    }
    Ok(read)
}

/// The entries of an XREAD reply of one stream (none when the read timed out).
fn entries_read(reply: redis::Value) -> redis::RedisResult<Vec<Entry>> {
    let stream = match reply {
        redis::Value::Nil => return Ok(Vec::new()),
        // RESP2: the streams, each a pair of its name and its entries.
        redis::Value::Array(streams) => match streams.into_iter().next() {
            Some(redis::Value::Array(pair)) => pair.into_iter().nth(1),
            _ => None,
        },
        // RESP3: a map of each stream's name to its entries.
        redis::Value::Map(streams) => streams.into_iter().next().map(|(_, entries)| entries),
        _ => None,
    };
    stream.map_or_else(|| Err(unexpected()), entries)
}

/// How long a blocking read waits for new entries before the follower checks on the run (and
/// its owner's lease: see [`super::replica`]).
pub(super) fn block_time(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(2))
}

/// This replica's log of run `run_id` (described by `record`), executing elsewhere: the one its
/// watchers here already read, or a new one, replayed from the store and followed from then on.
pub(super) async fn follow(
    shared: &Arc<Shared>,
    run_id: &str,
    record: &StoredRecord,
) -> Result<Arc<RunLog>, RunError> {
    let mut followers = shared.followers.lock().await;
    followers.retain(|_, log| log.strong_count() > 0);
    if let Some(log) = followers.get(run_id).and_then(Weak::upgrade) {
        return Ok(log);
    }
    let log = RunLog::new(
        Arc::from(run_id),
        shared.limits.event_buffer,
        shared.limits.max_events_per_run,
    );
    let started = codec::decode_event(log.run_id(), &record.started).map_err(RunError::Internal)?;
    log.replicate(started);
    let mut last_id = "1-0".to_owned();
    loop {
        let entries = redis::cmd("XRANGE")
            .arg(shared.keys.events(run_id))
            .arg(format!("({last_id}"))
            .arg("+")
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(&mut shared.conn())
            .await
            .and_then(entries)
            .map_err(|e| shared.unavailable(e))?;
        let count = entries.len();
        if apply(shared, &log, entries, &mut last_id)
            .await
            .map_err(|e| shared.unavailable(e))?
            || count < CHUNK
        {
            break;
        }
    }
    if log.lock().end.is_none() && record.state != RunState::Running {
        end_as_recorded(&log, record);
    }
    followers.insert(run_id.to_owned(), Arc::downgrade(&log));
    drop(followers);
    if log.lock().end.is_none() {
        tokio::spawn(live(
            Arc::clone(shared),
            Arc::downgrade(&log),
            run_id.to_owned(),
            last_id,
        ));
    }
    Ok(log)
}

/// Follows the run live until it ends, its last watcher leaves, or Redis fails.
async fn live(shared: Arc<Shared>, log: Weak<RunLog>, run_id: String, mut last_id: String) {
    let block = block_time(shared.lease);
    let mut conn = match shared.connector.dedicated(block).await {
        Ok(conn) => conn,
        Err(error) => return fail(&shared, &log, error).await,
    };
    let key = shared.keys.events(&run_id);
    loop {
        if log.strong_count() == 0 {
            return;
        }
        let mut command = redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(CHUNK)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&key)
            .arg(&last_id);
        let read = command.query_async::<redis::Value>(&mut conn);
        let reply = tokio::select! {
            reply = read => reply,
            () = shared.stop.cancelled() => {
                if let Some(log) = log.upgrade() {
                    log.finish(Err(RunError::ShuttingDown));
                }
                return;
            }
        };
        let Some(strong) = log.upgrade() else {
            return;
        };
        let outcome = match reply {
            Ok(redis::Value::Nil) => check(&shared, &strong, &run_id, &mut last_id).await,
            Ok(reply) => match entries_read(reply) {
                Ok(entries) => apply(&shared, &strong, entries, &mut last_id).await,
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match outcome {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => return fail(&shared, &log, error).await,
        }
    }
}

/// Adds `entries` to the log. Returns whether the run ended.
async fn apply(
    shared: &Shared,
    log: &RunLog,
    entries: Vec<Entry>,
    last_id: &mut String,
) -> redis::RedisResult<bool> {
    let Some(first) = entries.first().and_then(|entry| entry_sequence(&entry.id)) else {
        return Ok(false);
    };
    let expected = log.lock().next_sequence;
    if first > expected {
        // Events between were coalesced away by the writer, or evicted from the stream: the
        // record says how far eviction went.
        let evicted: Option<u64> = redis::cmd("HGET")
            .arg(shared.keys.record(log.run_id()))
            .arg("evicted_through")
            .query_async(&mut shared.conn())
            .await?;
        if let Some(evicted) = evicted.filter(|e| *e >= expected) {
            log.mark_evicted(evicted.min(first - 1));
        }
    }
    for Entry { id, stored } in entries {
        *last_id = id;
        match stored {
            Stored::Event(stored) => {
                match codec::decode_event_bytes(log.run_id(), &stored) {
                    Ok(event) => {
                        // Of the events, only a result ends the run.
                        let ends = matches!(event.kind, EventKind::Result(_));
                        log.replicate(event);
                        if ends && log.lock().end.is_some() {
                            return Ok(true);
                        }
                    }
                    Err(reason) => tracing::warn!(%reason, "skipped an unreadable event"),
                }
            }
            Stored::End(error) => {
                log.finish(Err(codec::decode_error(&String::from_utf8_lossy(&error))));
                return Ok(true);
            }
            Stored::Other => {}
        }
    }
    // The log may have ended meanwhile another way (the replica shutting down).
    Ok(log.lock().end.is_some())
}

/// The run was silent for a while: checks that it still runs (and its owner lives). Returns
/// whether it ended.
async fn check(
    shared: &Shared,
    log: &RunLog,
    run_id: &str,
    last_id: &mut String,
) -> redis::RedisResult<bool> {
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(shared.keys.record(run_id))
        .query_async(&mut shared.conn())
        .await?;
    let Some(record) = StoredRecord::parse(fields) else {
        log.finish(Err(RunError::UnknownRun(run_id.to_owned())));
        return Ok(true);
    };
    if record.state == RunState::Running {
        if !shared.lease_alive(&record.owner).await? {
            // The end entry it writes is read next.
            shared.declare_lost(run_id, &record.owner).await?;
        }
        return Ok(false);
    }
    // It ended: what is left to read, then the end as recorded.
    let entries = redis::cmd("XRANGE")
        .arg(shared.keys.events(run_id))
        .arg(format!("({last_id}"))
        .arg("+")
        .query_async(&mut shared.conn())
        .await
        .and_then(entries)?;
    if !apply(shared, log, entries, last_id).await? {
        end_as_recorded(log, &record);
    }
    Ok(true)
}

/// Ends the log as the record says the run ended (when its end entry was not read).
fn end_as_recorded(log: &RunLog, record: &StoredRecord) {
    let outcome = match (&record.error, &record.result) {
        (Some(error), _) => Err(codec::decode_error(error)),
        (None, Some(result)) => Ok(serde_json::from_str(result).unwrap_or_default()),
        (None, None) => Err(RunError::Internal(
            "the run ended without a recorded result or error".into(),
        )),
    };
    let end = record.end_ns.map_or_else(SystemTime::now, |ns| {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
    });
    log.finish_at(outcome, end);
}

/// Redis failed: the follower's watchers end with UNAVAILABLE, and a new watcher starts afresh.
async fn fail(shared: &Shared, log: &Weak<RunLog>, error: redis::RedisError) {
    tracing::warn!(%error, store = %shared.name, "lost the run store while following a run");
    if let Some(strong) = log.upgrade() {
        strong.finish(Err(shared.unavailable(error)));
        let mut followers = shared.followers.lock().await;
        if followers
            .get(&**strong.run_id())
            .is_some_and(|held| held.ptr_eq(log))
        {
            followers.remove(&**strong.run_id());
        }
    }
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    /// Two entries: an event, then a failed run's end; and an entry of a field unknown here.
    fn stream_entries() -> Value {
        Value::Array(vec![
            Value::Array(vec![bulk("7-0"), Value::Array(vec![bulk("e"), bulk("{}")])]),
            Value::Array(vec![
                bulk("7-1"),
                Value::Array(vec![bulk("end"), bulk("{\"error\":\"cancelled\"}")]),
            ]),
            Value::Array(vec![
                bulk("8-0"),
                Value::Array(vec![bulk("later"), bulk("x")]),
            ]),
        ])
    }

    fn shape(entries: Vec<Entry>) -> Vec<(String, &'static str, Vec<u8>)> {
        entries
            .into_iter()
            .map(|entry| match entry.stored {
                Stored::Event(payload) => (entry.id, "e", payload),
                Stored::End(error) => (entry.id, "end", error),
                Stored::Other => (entry.id, "other", Vec::new()),
            })
            .collect()
    }

    #[test]
    fn xread_replies_of_either_protocol_give_the_entries_in_order() {
        let expected = vec![
            ("7-0".to_owned(), "e", b"{}".to_vec()),
            (
                "7-1".to_owned(),
                "end",
                b"{\"error\":\"cancelled\"}".to_vec(),
            ),
            ("8-0".to_owned(), "other", Vec::new()),
        ];
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s"), stream_entries()])]);
        assert_eq!(shape(entries_read(resp2).unwrap()), expected);
        let resp3 = Value::Map(vec![(bulk("s"), stream_entries())]);
        assert_eq!(shape(entries_read(resp3).unwrap()), expected);
        assert!(entries_read(Value::Nil).unwrap().is_empty());
        assert_eq!(shape(entries(stream_entries()).unwrap()), expected);
        // Anything else is the store misbehaving: the follower fails, it does not skip.
        assert!(entries_read(Value::Int(3)).is_err());
        assert!(entries(Value::Array(vec![bulk("7-0")])).is_err());
    }
}
