//! The Lua scripts that change a run in Redis. Each is atomic (Redis runs a script alone), and
//! each checks the run's state first: only the owner writes a running run's events, and a run
//! ends exactly once (its owner publishing its end and another replica declaring the owner lost
//! cannot both happen). One script call is one round trip, however many events it carries.
//!
//! With one Redis server, a script also does the run's bookkeeping in the fleet-wide keys (the
//! index, the finished runs, the replica's and the principal's sets) and evicts old runs (beyond
//! `max_runs`, with keys it builds from the prefix). In Redis Cluster a script may touch the keys
//! of one hash slot only, so there the scripts are given the run's own keys alone (its record and
//! stream, one slot: see [`super::keys`]) and skip the rest, which the store then does with
//! commands of their own, each idempotent ([`ADMIT`] and [`RUN_ENDED`] are those scripts).

use std::sync::LazyLock;

use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

use super::connection::Connection;

/// Functions shared by the scripts.
const PRELUDE: &str = r#"
-- Why a write to the run is refused: 'missing' (no record), 'ended' (not running, or owned by
-- another replica), or nil.
local function refused(record, owner)
  local state = redis.call('HGET', record, 'state')
  if not state then return 'missing' end
  if state ~= 'running' or redis.call('HGET', record, 'owner') ~= owner then return 'ended' end
  return nil
end

-- Appends the entries in ARGV from `first` (a count, then id/payload pairs). An id not above the
-- stream's last is refused by XADD: a replayed or duplicated write adds nothing. Any other error
-- (out of memory) fails the script, so the writer retries the batch.
local function append_entries(stream, first)
  local n = tonumber(ARGV[first])
  local added = 0
  for i = 0, n - 1 do
    local reply = redis.pcall('XADD', stream, ARGV[first + 1 + 2 * i], 'e', ARGV[first + 2 + 2 * i])
    if type(reply) == 'table' and reply.err then
      if not string.find(reply.err, 'equal or smaller', 1, true) then error(reply) end
    else
      added = added + 1
    end
  end
  return added, first + 1 + 2 * n
end

-- Drops the entries up to sequence `through` (gone from the writer's log before it could write
-- them), then the oldest beyond `maxlen`; returns the highest sequence now gone.
local function trim(stream, through, maxlen)
  local gone = through
  if through > 0 then redis.call('XTRIM', stream, 'MINID', (through + 1) .. '-0') end
  local over = redis.call('XLEN', stream) - maxlen
  if over > 0 then
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', over)
    local seq = tonumber(string.match(oldest[#oldest][1], '^(%d+)-'))
    if seq > gone then gone = seq end
    redis.call('XTRIM', stream, 'MAXLEN', maxlen)
  end
  return gone
end

-- Raises the record's counters, deletes the progress fields of the calls that finished (ARGV from
-- `first`: a count, then field names) and sets the latest progress of live calls (then pairs).
local function update_record(record, last_sequence, gone, first)
  if gone > tonumber(redis.call('HGET', record, 'evicted_through') or '0') then
    redis.call('HSET', record, 'evicted_through', gone)
  end
  if last_sequence > tonumber(redis.call('HGET', record, 'last_sequence') or '0') then
    redis.call('HSET', record, 'last_sequence', last_sequence)
  end
  local finished = tonumber(ARGV[first])
  if finished > 0 then redis.call('HDEL', record, unpack(ARGV, first + 1, first + finished)) end
  for j = first + 1 + finished, #ARGV, 2 do redis.call('HSET', record, ARGV[j], ARGV[j + 1]) end
end

-- Counts run `id` among a principal's runs in progress (a set: once, however often), unless the
-- principal has `limit` of them already (0: no limit). Returns false when it is at its limit.
local function admit(principal_runs, id, limit, ttl)
  if redis.call('SISMEMBER', principal_runs, id) == 0 then
    if limit > 0 and redis.call('SCARD', principal_runs) >= limit then return false end
    redis.call('SADD', principal_runs, id)
  end
  redis.call('PEXPIRE', principal_runs, ttl)
  return true
end

-- What every end does: the run's keys expire after the retention time, the run leaves its
-- replica's set and its principal's (its slot under `max_runs_per_principal` is free: a set, so
-- freed once however often this runs) and joins the finished ones, and the oldest finished
-- beyond `max_runs` go. Without the fleet's keys (`index` nil: Redis Cluster) only the first.
local function ended(record, stream, index, finished, replica_runs, principal_runs, id, end_ms,
                     retention, index_ttl, prefix, max_runs)
  redis.call('PEXPIRE', record, retention)
  redis.call('PEXPIRE', stream, retention)
  if not index then return end
  -- The run's idempotency key lasts as long as its record, unless another run took it since.
  local claim = redis.call('HGET', record, 'claim')
  if claim and string.sub(redis.call('GET', claim) or '', 1, #id) == id then
    redis.call('PEXPIRE', claim, retention)
  end
  redis.call('SREM', replica_runs, id)
  redis.call('SREM', principal_runs, id)
  redis.call('ZADD', finished, end_ms, id)
  redis.call('PEXPIRE', finished, index_ttl)
  local over = redis.call('ZCARD', finished) - max_runs
  if over > 0 then
    local gone = redis.call('ZPOPMIN', finished, over)
    for i = 1, #gone, 2 do
      redis.call('DEL', prefix .. 'run:' .. gone[i], prefix .. 'run:' .. gone[i] .. ':events')
      redis.call('ZREM', index, gone[i])
    end
  end
end
"#;

/// Runs `call`, an `EVALSHA` of `script` built by the caller, loading the script first when the
/// server does not know it (it restarted, or was flushed).
pub(super) async fn invoke<T: FromRedisValue>(
    script: &Script,
    call: &Cmd,
    conn: &mut Connection,
) -> RedisResult<T> {
    match call.query_async(conn).await {
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            call.query_async(conn).await
        }
        reply => reply,
    }
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// Records a new run (or records it again, after the store lost it).
///
/// KEYS: record, events, index, replica runs, principal's runs, then the index of each of the
/// run's labels; in Redis Cluster record and events only (with the limit ''), the rest (the
/// index, the sets, the label indexes) done apart.
/// ARGV: run id, owner, tool, agent (0/1), create_ns, principal, started event, ttl_ms,
/// index_ttl_ms, last_sequence, evicted_through, create_us (the index's score: ListRuns order),
/// the principal's limit ('' when its runs are not counted, 0 to count without refusing), the
/// key of the run's idempotency claim ('' for none), the creation time (µs) before which label
/// index entries are dropped (their runs expired).
/// Returns `created`, `exists` when this owner already recorded it (a retried write), or `busy`
/// when the principal has its limit of runs in progress across the fleet (nothing is written).
pub(super) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'owner') == ARGV[2] then return 'exists' end
  return redis.error_reply('run id ' .. ARGV[1] .. ' is taken by another replica')
end
if ARGV[13] ~= '' and not admit(KEYS[5], ARGV[1], tonumber(ARGV[13]), ARGV[9]) then
  return 'busy'
end
redis.call('HSET', KEYS[1], 'tool', ARGV[3], 'agent', ARGV[4], 'create_ns', ARGV[5],
  'owner', ARGV[2], 'principal', ARGV[6], 'state', 'running',
  'last_sequence', ARGV[10], 'evicted_through', ARGV[11], 'started', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.pcall('XADD', KEYS[2], '1-0', 'e', ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
if ARGV[14] ~= '' then redis.call('HSET', KEYS[1], 'claim', ARGV[14]) end
if KEYS[3] then
  redis.call('ZADD', KEYS[3], ARGV[12], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[9])
  redis.call('SADD', KEYS[4], ARGV[1])
  redis.call('PEXPIRE', KEYS[4], ARGV[9])
end
for i = 6, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[12], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[15])
  redis.call('PEXPIRE', KEYS[i], ARGV[9])
end
return 'created'
"#,
    )
});

/// Appends a batch of a running run's events.
///
/// KEYS: record, events.
/// ARGV: owner, maxlen, ttl_ms, last_sequence, evicted_through, then the entries (count, then
/// id/payload pairs), then the progress fields of the calls that finished (count, then names),
/// then the latest progress fields of live calls (field/payload pairs).
/// Returns `{'ok', added}`, `{'missing', ''}` or `{'ended', error}`.
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local why = refused(KEYS[1], ARGV[1])
if why then return {why, redis.call('HGET', KEYS[1], 'error') or ''} end
local added, next_arg = append_entries(KEYS[2], 6)
local gone = trim(KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[2]))
update_record(KEYS[1], tonumber(ARGV[4]), gone, next_arg)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {'ok', tostring(added)}
"#,
    )
});

/// Ends a run: its last events, its terminal event (the `result` entry, or for an error an
/// `end` entry `<last>-1`) and the record's final state, together.
///
/// KEYS: record, events, index, finished, replica runs, principal's runs; in Redis Cluster record
/// and events only (the bookkeeping is done apart).
/// ARGV: owner, maxlen, retention_ms, last_sequence, evicted_through, state, end_ns, result
/// ('' for none), error ('' for none), max_runs, prefix, run id, index_ttl_ms, end_ms, then the
/// entries, the finished calls and the progress fields as for APPEND.
/// Returns `{'ok', added}`, `{'missing', ''}` or `{'ended', error}`.
pub(super) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local why = refused(KEYS[1], ARGV[1])
if why then return {why, redis.call('HGET', KEYS[1], 'error') or ''} end
local added, next_arg = append_entries(KEYS[2], 15)
if ARGV[9] ~= '' then redis.pcall('XADD', KEYS[2], ARGV[4] .. '-1', 'end', ARGV[9]) end
local gone = trim(KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[2]))
update_record(KEYS[1], tonumber(ARGV[4]), gone, next_arg)
redis.call('HSET', KEYS[1], 'state', ARGV[6], 'end_ns', ARGV[7], 'last_sequence', ARGV[4])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[9]) end
ended(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[12], ARGV[14], ARGV[3],
  ARGV[13], ARGV[11], tonumber(ARGV[10]))
return {'ok', tostring(added)}
"#,
    )
});

/// Ends a run whose owner's lease lapsed, with the owner's error, unless the run ended or the
/// owner renewed its lease meanwhile. The run's open input requests are resolved CANCELLED first:
/// their `input_resolved` events (sequences after the record's `last_sequence`, encoded by the
/// caller) go before the `end` entry, and their record fields go, so that every request a reader
/// saw has exactly one outcome. The caller read the requests and `last_sequence` just before: if
/// the owner wrote meanwhile (it raised `last_sequence`), nothing is written and the caller reads
/// again.
///
/// KEYS: record, events, index, finished, owner's runs, owner's lease, principal's runs; in Redis
/// Cluster record and events only (the caller checked the lease just before; the bookkeeping is
/// done apart).
/// ARGV: run id, owner, end_ns, error, retention_ms, max_runs, prefix, index_ttl_ms, end_ms,
/// maxlen, the `last_sequence` read, the `last_sequence` after the resolutions, then the
/// resolutions (count, then id/payload pairs), then the requests' fields (count, then names).
/// Returns `lost`, `alive`, `ended` or `changed`.
pub(super) static DECLARE_LOST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then
  if KEYS[5] then redis.call('SREM', KEYS[5], ARGV[1]) end
  return 'ended'
end
if KEYS[6] and redis.call('EXISTS', KEYS[6]) == 1 then return 'alive' end
if tonumber(redis.call('HGET', KEYS[1], 'last_sequence') or '0') ~= tonumber(ARGV[11]) then
  return 'changed'
end
local _, next_arg = append_entries(KEYS[2], 13)
-- As a failed run's end written by its owner: `<last>-1`, after the last event, and no sequence
-- of its own (a reader's log gives the error the next one).
redis.pcall('XADD', KEYS[2], ARGV[12] .. '-1', 'end', ARGV[4])
local gone = trim(KEYS[2], 0, tonumber(ARGV[10]))
update_record(KEYS[1], tonumber(ARGV[12]), gone, next_arg)
redis.call('HSET', KEYS[1], 'state', 'failed', 'end_ns', ARGV[3], 'error', ARGV[4])
ended(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], ARGV[1], ARGV[9], ARGV[5],
  ARGV[8], ARGV[7], tonumber(ARGV[6]))
return 'lost'
"#,
    )
});

/// Asks a running run's owner to cancel it.
///
/// KEYS: record, owner's cancel list; in Redis Cluster the record only (the caller pushes onto
/// the list apart).
/// ARGV: run id, owner, ttl_ms.
/// Returns `requested`, `ended` or `missing`.
pub(super) static REQUEST_CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local why = refused(KEYS[1], ARGV[2])
if why then return why end
redis.call('HSET', KEYS[1], 'cancel_requested', '1')
if KEYS[2] then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 'requested'
"#,
    )
});

/// Claims an idempotency key unless it is held.
///
/// KEYS: the claim. ARGV: the claim's value, its ttl_ms.
/// Returns '' when claimed, or the value that holds it.
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
"#,
    )
});

/// Frees an idempotency key if it still holds the given value.
///
/// KEYS: the claim. ARGV: the value. Returns 1 when freed, else 0.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// Forgets, in the index, finished runs whose keys expired.
///
/// KEYS: finished, index. ARGV: the end time (ms) before which runs expired.
/// Returns how many it forgot.
pub(super) static FORGET_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, id in ipairs(gone) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
end
return #gone
"#,
    )
});

/// Redis Cluster: counts a new run among its principal's runs in progress, unless the principal
/// is at its limit (before the run is recorded; undone if recording then fails).
///
/// KEYS: principal's runs. ARGV: run id, limit (0: count without refusing), ttl_ms.
/// Returns `admitted` or `busy`.
pub(super) static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if admit(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]) then return 'admitted' end
return 'busy'
"#,
    )
});

/// Redis Cluster: a run ended; it joins the finished runs, and the oldest finished beyond
/// `max_runs` leave the index. Idempotent (a run ended twice is one member).
///
/// KEYS: finished, index (one slot: the fleet's). ARGV: run id, end_ms, index_ttl_ms, max_runs.
/// Returns the ids of the runs evicted: the caller deletes their keys (each run's in its slot).
pub(super) static RUN_ENDED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local evicted = {}
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if over > 0 then
  local gone = redis.call('ZPOPMIN', KEYS[1], over)
  for i = 1, #gone, 2 do
    redis.call('ZREM', KEYS[2], gone[i])
    evicted[#evicted + 1] = gone[i]
  end
end
return evicted
"#,
    )
});
