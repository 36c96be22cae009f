//! Keeps a remote's tools current: a remote can restart with other tools (a Python worker
//! redeployed), and this server should offer what the remote has now, not what it had at
//! start-up.
//!
//! Listing is cheap (one unary call), so it is simply repeated: every `relist_secs`, and at once
//! when a run found the remote unreachable or without its tool. A listing that fails (the remote
//! is down) leaves the last known tools in place, so their runs fail with UNAVAILABLE naming the
//! remote rather than NOT_FOUND, and is tried again after a short wait that doubles up to
//! `relist_secs`: the remote's tools are listed again soon after it comes back.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Remote;
use crate::tools::ToolListing;

/// First wait before listing an unreachable remote again; doubled after each failure.
const RETRY_FIRST: Duration = Duration::from_millis(250);

/// Lists `remote`'s tools into `set` until the set is dropped (its server is gone). `unreachable`:
/// the remote could not be listed at start-up (already logged), so the first retry comes soon.
pub(super) async fn keep_listed(
    remote: Arc<Remote>,
    set: Weak<dyn ToolListing>,
    unreachable: bool,
) {
    let mut retry: Option<Duration> = unreachable.then_some(RETRY_FIRST);
    // Tools left out by the last listing: warned about when they change, not at every listing.
    let mut refused: Vec<String> = Vec::new();
    loop {
        let wait = retry.unwrap_or(remote.relist_every);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = remote.relist_now.notified() => {}
        }
        let Some(set) = set.upgrade() else {
            return;
        };
        match remote.list().await {
            Ok(tools) => {
                if retry.is_some() {
                    tracing::info!(remote = %remote.endpoint, "remote reachable again; tools listed");
                }
                retry = None;
                set.set_unreachable(None);
                let change = set.replace(tools);
                if !change.is_empty() {
                    tracing::info!(
                        remote = %remote.endpoint,
                        added = ?change.added,
                        removed = ?change.removed,
                        "remote tools changed"
                    );
                }
                if change.refused != refused {
                    for reason in &change.refused {
                        tracing::warn!(remote = %remote.endpoint, "remote tool left out: {reason}");
                    }
                    refused = change.refused;
                }
            }
            Err(error) => {
                set.set_unreachable(Some(error.clone()));
                let next = match retry {
                    None => {
                        tracing::warn!(remote = %remote.endpoint, %error, "remote unreachable; its tools stay listed until it answers again");
                        RETRY_FIRST
                    }
                    Some(previous) => (previous * 2).min(remote.relist_every),
                };
                retry = Some(next);
            }
        }
    }
}
