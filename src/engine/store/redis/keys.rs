//! The Redis keys of a fleet, all under one prefix (`[runs] key_prefix`, default `toolstream:`),
//! so that several fleets (or tests) can share one Redis.
//!
//! | key | type | what |
//! |---|---|---|
//! | `{p}run:{id}` | hash | the run's record: state, tool, times, owner, latest progress per call, result or error |
//! | `{p}run:{id}:events` | stream | the run's events, entry id `<sequence>-0`; a failed run's end is `<last>-1` |
//! | `{p}runs` | sorted set | every run, scored by creation time in µs (ties: by id): ListRuns, newest first |
//! | `{p}finished` | sorted set | finished runs by end time: `max_runs` and retention housekeeping |
//! | `{p}replicas` | sorted set | replicas by last lease renewal, for finding the lost ones |
//! | `{p}replica:{r}` | string | replica `r`'s lease: it exists while `r` is alive |
//! | `{p}replica:{r}:runs` | set | the runs `r` executes |
//! | `{p}replica:{r}:cancel` | list | run ids whose cancellation was asked of `r` from elsewhere |
//! | `{p}replica:{r}:inputs` | list | answers to input requests of `r`'s runs, given elsewhere |
//! | `{p}reply:{u}` | list | `r`'s decision on one such answer, for the replica that took it |
//! | `{p}principal:{{n}}:runs` | set | the runs in progress of principal `n`, across the fleet: `[auth] max_runs_per_principal` |
//! | `{p}label:{k}:{v}` | sorted set | the runs carrying label `k` = `v`, scored as `{p}runs`: ListRuns with a label filter |
//! | `{p}idempotency:{d}` | string | the claim of an idempotency key (`d`: SHA-256 of the owner and the key): `<run id> <fingerprint> <µs>` |
//!
//! A principal's key carries its name as a hash tag (`{n}` in braces), so that in Redis Cluster
//! each principal's count lives whole in one slot. It is one key per principal, touched twice per
//! run (at its start and its end): far below what one Redis node serves, however many replicas.

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn record(&self, run_id: &str) -> String {
        format!("{}run:{run_id}", self.prefix)
    }

    pub(super) fn events(&self, run_id: &str) -> String {
        format!("{}run:{run_id}:events", self.prefix)
    }

    pub(super) fn index(&self) -> String {
        format!("{}runs", self.prefix)
    }

    pub(super) fn finished(&self) -> String {
        format!("{}finished", self.prefix)
    }

    pub(super) fn replicas(&self) -> String {
        format!("{}replicas", self.prefix)
    }

    pub(super) fn lease(&self, replica: &str) -> String {
        format!("{}replica:{replica}", self.prefix)
    }

    pub(super) fn replica_runs(&self, replica: &str) -> String {
        format!("{}replica:{replica}:runs", self.prefix)
    }

    /// The runs in progress of `principal`, fleet-wide (empty: runs of no one).
    pub(super) fn principal_runs(&self, principal: &str) -> String {
        format!("{}principal:{{{principal}}}:runs", self.prefix)
    }

    /// The runs carrying label `key` = `value` (a label key has no `:`, so the name is unambiguous).
    pub(super) fn label(&self, key: &str, value: &str) -> String {
        format!("{}label:{key}:{value}", self.prefix)
    }

    /// The claim of an idempotency key, by its slot (a hex digest).
    pub(super) fn claim(&self, slot: &str) -> String {
        format!("{}idempotency:{slot}", self.prefix)
    }

    pub(super) fn cancels(&self, replica: &str) -> String {
        format!("{}replica:{replica}:cancel", self.prefix)
    }

    pub(super) fn inputs(&self, replica: &str) -> String {
        format!("{}replica:{replica}:inputs", self.prefix)
    }

    /// Where the decision on one routed answer goes (`id`: a fresh UUID).
    pub(super) fn reply(&self, id: &str) -> String {
        format!("{}reply:{id}", self.prefix)
    }
}

/// The id of the stream entry holding the event with `sequence`.
pub(super) fn entry_id(sequence: u64) -> String {
    format!("{sequence}-0")
}

/// The sequence an entry id stands for (`<sequence>-<n>`).
pub(super) fn entry_sequence(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}
