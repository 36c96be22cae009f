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
//! | `{p}principal:{{n}}:runs` | set | the runs in progress of owner `n`, across the fleet: `Limits::max_runs_per_owner` |
//! | `{p}label:{k}:{v}` | sorted set | the runs carrying label `k` = `v`, scored as `{p}runs`: ListRuns with a label filter |
//! | `{p}idempotency:{d}` | string | the claim of an idempotency key (`d`: SHA-256 of the owner and the key): `<run id> <fingerprint> <µs>` |
//!
//! An owner's key carries its name as a hash tag (`{n}` in braces), so that in Redis Cluster
//! each owner's count lives whole in one slot. It is one key per owner, touched twice per
//! run (at its start and its end): far below what one Redis node serves, however many replicas.
//!
//! **Redis Cluster.** There every other key carries a hash tag too, so that what one script or
//! pipeline touches lives in one slot: a run's keys are tagged by the run (`{p}run:{<id>}`,
//! `{p}run:{<id>}:events`), a replica's by the replica (`{p}replica:{<r>}`, `…:runs`,
//! `…:cancel`), and the fleet-wide sorted sets by `{fleet}` (`{p}{fleet}:runs`,
//! `{p}{fleet}:finished`, `{p}{fleet}:replicas`: one slot, so the script forgetting expired runs
//! stays atomic). The per-event traffic (a run's batches, its followers' reads) is on the run's
//! own slot and spreads over the cluster; the fleet's keys take a write per run start, per run end
//! and per replica a second. With one server the keys are untagged, as they always were.

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    /// Hash-tagged for Redis Cluster.
    cluster: bool,
}

impl Keys {
    pub(super) fn new(prefix: &str, cluster: bool) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            cluster,
        }
    }

    /// `name` as a hash tag in Redis Cluster (`{name}`), as it is otherwise.
    fn tag<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        if self.cluster {
            format!("{{{name}}}").into()
        } else {
            name.into()
        }
    }

    /// The start of the fleet-wide keys' names.
    fn fleet(&self) -> String {
        if self.cluster {
            format!("{}{{fleet}}:", self.prefix)
        } else {
            self.prefix.clone()
        }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn record(&self, run_id: &str) -> String {
        format!("{}run:{}", self.prefix, self.tag(run_id))
    }

    pub(super) fn events(&self, run_id: &str) -> String {
        format!("{}run:{}:events", self.prefix, self.tag(run_id))
    }

    pub(super) fn index(&self) -> String {
        format!("{}runs", self.fleet())
    }

    pub(super) fn finished(&self) -> String {
        format!("{}finished", self.fleet())
    }

    pub(super) fn replicas(&self) -> String {
        format!("{}replicas", self.fleet())
    }

    pub(super) fn lease(&self, replica: &str) -> String {
        format!("{}replica:{}", self.prefix, self.tag(replica))
    }

    pub(super) fn replica_runs(&self, replica: &str) -> String {
        format!("{}replica:{}:runs", self.prefix, self.tag(replica))
    }

    /// The runs in progress of the owner `belongs_to`, fleet-wide (empty: runs of no one). The
    /// key still says `principal`, as the first releases named it.
    pub(super) fn owned_runs(&self, belongs_to: &str) -> String {
        format!("{}principal:{{{belongs_to}}}:runs", self.prefix)
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
        format!("{}replica:{}:cancel", self.prefix, self.tag(replica))
    }

    pub(super) fn inputs(&self, replica: &str) -> String {
        // The cancel list's slot: the owner blocks on both in one BLPOP.
        format!("{}replica:{}:inputs", self.prefix, self.tag(replica))
    }

    /// Where the decision on one routed answer goes (`id`: a fresh UUID).
    pub(super) fn reply(&self, id: &str) -> String {
        format!("{}reply:{id}", self.prefix)
    }
}

/// The id of the stream entry holding the event with `sequence`.
pub(super) fn entry_id(sequence: u64) -> String {
    let mut id = String::new();
    write_entry_id(&mut id, sequence);
    id
}

/// [`entry_id`] into `id` (its buffer reused).
pub(super) fn write_entry_id(id: &mut String, sequence: u64) {
    use std::fmt::Write;
    id.clear();
    let _ = write!(id, "{sequence}-0");
}

/// The sequence an entry id stands for (`<sequence>-<n>`).
pub(super) fn entry_sequence(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}
