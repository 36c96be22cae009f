//! Every tool process group toolstream started, tracked until it is killed and reaped, so that no
//! tool process outlives toolstream.
//!
//! A command tool's group lives for one run; an MCP server's group is long-lived, shared by runs.
//! Either way the group is registered here when it starts and leaves the registry only once its
//! leader was reaped and SIGKILL went to the whole group (see `process_group.rs`). The tasks that
//! stop and reap groups in the background run on one process-wide [`TaskTracker`], because they
//! must outlive the run (or the connection) that let go of the group.
//!
//! At shutdown, after the engine's runs ended, the server calls [`stop_all`]: SIGTERM to the
//! long-lived groups, the grace period, SIGKILL to every group still registered, and a wait until
//! all of them were reaped. Without it, those background tasks would die with the runtime and
//! leave behind any process that ignores SIGTERM (a registration dropped before its group was
//! reaped still sends SIGKILL, but nothing reaps the processes then).
//!
//! The registry is process-wide: [`stop_all`] stops the tool processes of every server in the
//! process. It is meant for the end of the process.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

/// How long [`stop_all`] waits for the reaping after SIGKILL. SIGKILL cannot be ignored, but a
/// process stuck in the kernel (uninterruptible sleep) dies only when it gets out.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// The process-wide registry.
static PROCESSES: LazyLock<Processes> = LazyLock::new(|| Processes {
    tasks: TaskTracker::new(),
    groups: Mutex::new(HashMap::new()),
    changed: Notify::new(),
    next_id: AtomicU64::new(0),
});

struct Processes {
    /// The tasks that stop and reap groups in the background.
    tasks: TaskTracker,
    /// Groups not yet reaped, by registration id (a group id can only be reused once the group is
    /// gone, but an id of our own needs no such argument).
    groups: Mutex<HashMap<u64, Group>>,
    /// Notified whenever a group leaves the registry.
    changed: Notify,
    next_id: AtomicU64,
}

/// What the registry knows of a group.
struct Group {
    pgid: libc::pid_t,
    /// The command, for logs.
    what: String,
    /// An MCP server rather than one run's tool: nothing else sends it SIGTERM at shutdown.
    long_lived: bool,
}

impl Processes {
    fn groups(&self) -> MutexGuard<'_, HashMap<u64, Group>> {
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A group's place in the registry, held by whatever will reap the group's leader.
///
/// [`Registration::reaped`] ends it. Dropped without that (its task was dropped with the runtime,
/// or never ran), it sends SIGKILL to the group first: a group nobody will stop must not live on.
pub(crate) struct Registration {
    id: u64,
    pgid: libc::pid_t,
    reaped: bool,
}

/// Registers the group `pgid` started for `what`.
pub(crate) fn register(pgid: libc::pid_t, what: String, long_lived: bool) -> Registration {
    let id = PROCESSES.next_id.fetch_add(1, Ordering::Relaxed);
    PROCESSES.groups().insert(
        id,
        Group {
            pgid,
            what,
            long_lived,
        },
    );
    Registration {
        id,
        pgid,
        reaped: false,
    }
}

impl Registration {
    /// The group's leader was reaped and the rest of the group got SIGKILL: it leaves the registry.
    pub(crate) fn reaped(mut self) {
        self.reaped = true;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.reaped {
            signal_group(self.pgid, libc::SIGKILL);
        }
        PROCESSES.groups().remove(&self.id);
        PROCESSES.changed.notify_waiters();
    }
}

/// How many tool process groups are alive now (registered and not yet reaped): the
/// `toolstream_tool_processes` gauge.
pub fn live_groups() -> usize {
    PROCESSES.groups().len()
}

/// Runs `task` (which stops or watches a group and holds its [`Registration`]) on the current
/// runtime, tracked. Outside a runtime the task is dropped, so its registration kills the group.
pub(crate) fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        PROCESSES.tasks.spawn_on(task, &runtime);
    }
}

/// Stops every tool process group toolstream started and waits until each was reaped: SIGTERM to
/// the long-lived groups (MCP servers; a run's group got it when its run let go of it), up to
/// `grace` for them all to exit, SIGKILL to whatever is left, and a bounded wait for the reaping.
/// Always returns; what could not be reaped in time is logged.
///
/// Call it after the runs ended. It stops the tool processes of every server in this process.
pub async fn stop_all(grace: Duration) {
    let long_lived: Vec<(libc::pid_t, String)> = PROCESSES
        .groups()
        .values()
        .filter(|group| group.long_lived)
        .map(|group| (group.pgid, group.what.clone()))
        .collect();
    for (pgid, what) in &long_lived {
        tracing::debug!(pgid, what, "stopping a tool process group");
        signal_group(*pgid, libc::SIGTERM);
    }
    if all_reaped_within(grace).await {
        return;
    }
    let left: Vec<(libc::pid_t, String)> = PROCESSES
        .groups()
        .values()
        .map(|group| (group.pgid, group.what.clone()))
        .collect();
    if !left.is_empty() {
        tracing::warn!(
            groups = ?left,
            "tool processes still running after the grace period; killing them"
        );
    }
    for (pgid, _) in &left {
        signal_group(*pgid, libc::SIGKILL);
    }
    if !all_reaped_within(REAP_LIMIT).await {
        let left: Vec<(libc::pid_t, String)> = PROCESSES
            .groups()
            .values()
            .map(|group| (group.pgid, group.what.clone()))
            .collect();
        tracing::warn!(
            groups = ?left,
            tasks = PROCESSES.tasks.len(),
            "tool processes not reaped after SIGKILL; giving up on them"
        );
    }
}

/// Waits until the registry is empty and every tracked task ended, for at most `limit`.
async fn all_reaped_within(limit: Duration) -> bool {
    let all_reaped = async {
        loop {
            let changed = PROCESSES.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a removal between the check and the wait counts.
            changed.as_mut().enable();
            if PROCESSES.groups().is_empty() {
                break;
            }
            changed.await;
        }
        // A task drops its registration last, so this wait is short; it also covers tasks that
        // are about to end. Once closed, the tracker stays closed: `wait` then means "idle".
        PROCESSES.tasks.close();
        PROCESSES.tasks.wait().await;
    };
    tokio::time::timeout(limit, all_reaped).await.is_ok()
}

/// Sends `signal` to every process of group `pgid`. A group that no longer exists is fine.
///
/// A group id stays reserved while any member lives, so this reaches only the tool's processes;
/// the one window where the id could name a new group (the group emptied and the kernel reused
/// the id, after the leader was reaped a moment before) needs the pid space to wrap meanwhile.
pub(crate) fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid <= 1 {
        return; // never signal "every process" (0 is the caller's group, -1 is everything)
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(-pgid, signal) };
    if sent != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, signal, %error, "cannot signal a tool's process group");
        }
    }
}
