//! Whom a run belongs to, and how many runs each owner has in progress on this replica.
//!
//! The engine does not know what an owner is (the auth layer's principal, today): it only
//! compares owners (a listing of one owner's runs, an idempotency key per owner), stores them
//! with their runs, and counts their runs in progress against [`Limits::max_runs_per_owner`]
//! (a shared run store counts them across the fleet).
//!
//! [`Limits::max_runs_per_owner`]: super::Limits::max_runs_per_owner

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::RunError;

/// Whom a run belongs to: an opaque name given by the layer above (runs started with no owner
/// belong to no one and are anyone's to see).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(Arc<str>);

impl Owner {
    /// The owner named `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Owner(name.into())
    }

    /// The name it was made with (what a shared run store records).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many runs each owner has in progress on this replica.
#[derive(Default)]
pub(super) struct OwnerRuns {
    counts: Mutex<HashMap<Owner, usize>>,
}

impl OwnerRuns {
    /// One more run for `owner`, unless it has `limit` in progress already.
    pub(super) fn take(
        runs: &Arc<OwnerRuns>,
        owner: &Owner,
        limit: usize,
    ) -> Result<OwnerSlot, RunError> {
        let mut counts = runs.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(owner.clone()).or_insert(0);
        if *count >= limit {
            return Err(RunError::OwnerBusy {
                owner: owner.to_string(),
                limit,
            });
        }
        *count += 1;
        Ok(OwnerSlot {
            runs: Arc::clone(runs),
            owner: owner.clone(),
        })
    }
}

/// One run of an owner in progress; counted until dropped.
pub(super) struct OwnerSlot {
    runs: Arc<OwnerRuns>,
    owner: Owner,
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
