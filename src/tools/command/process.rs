//! A tool's process, started in a process group of its own so that everything it starts can be
//! stopped with it, and stopped for sure when the run lets go of it.
//!
//! Stopping is SIGTERM to the whole group, then SIGKILL after a grace period. A run is cancelled by
//! dropping its future, so stopping must work from `Drop`: the guard sends SIGTERM at once and
//! hands the child to a small task that escalates and reaps it, so no zombie stays behind.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

/// A started tool process and the pipes to talk to it.
pub struct Spawned {
    /// Stops the process group when dropped, unless the process already exited.
    pub group: ProcessGroup,
    /// Where the arguments go.
    pub stdin: ChildStdin,
    /// The protocol lines.
    pub stdout: ChildStdout,
    /// The log lines.
    pub stderr: ChildStderr,
}

/// The tool's process group, led by the tool's process.
pub struct ProcessGroup {
    /// `None` once the leader has been reaped (or handed to the reaper task).
    child: Option<Child>,
    /// The leader's pid, which is also the group's id.
    pgid: libc::pid_t,
    grace: Duration,
}

impl ProcessGroup {
    /// Starts `command` with piped stdio in a new process group.
    pub fn spawn(mut command: Command, grace: Duration) -> io::Result<Spawned> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // The guard below does better than tokio's kill-on-drop: the whole group, politely.
            .kill_on_drop(false);
        let mut child = command.spawn()?;
        let pgid = child
            .id()
            .and_then(|id| libc::pid_t::try_from(id).ok())
            .ok_or_else(|| io::Error::other("the tool exited before its pid was known"))?;
        let missing = || io::Error::other("a pipe to the tool was not created");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        Ok(Spawned {
            group: ProcessGroup {
                child: Some(child),
                pgid,
                grace,
            },
            stdin,
            stdout,
            stderr,
        })
    }

    /// The leader's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pgid
    }

    /// Waits for the tool's process to exit and reaps it. Whatever it left running in its group
    /// is killed: those processes would otherwise run on for nobody (and could hold its stdout
    /// open). Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            return Err(io::Error::other("the tool's process was already reaped"));
        };
        let status = child.wait().await?;
        self.child = None;
        signal_group(self.pgid, libc::SIGKILL);
        Ok(status)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        signal_group(self.pgid, libc::SIGTERM);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(reap(child, self.pgid, self.grace));
            }
            Err(_) => {
                // No runtime left to wait the grace period on: kill now; tokio reaps dropped
                // children in the background.
                signal_group(self.pgid, libc::SIGKILL);
            }
        }
    }
}

/// Gives the group `grace` to exit after SIGTERM, then kills what is left and reaps the leader.
async fn reap(mut child: Child, pgid: libc::pid_t, grace: Duration) {
    let _ = tokio::time::timeout(grace, child.wait()).await;
    // Also catches members that ignored SIGTERM while the leader obeyed it.
    signal_group(pgid, libc::SIGKILL);
    if let Err(error) = child.wait().await {
        tracing::warn!(pid = pgid, %error, "cannot reap a stopped tool process");
    }
}

/// Sends `signal` to every process of group `pgid`. A group that no longer exists is fine.
///
/// A group id stays reserved while any member lives, so this reaches only the tool's processes;
/// the one window where the id could name a new group (the group emptied and the kernel reused
/// the id, after the leader was reaped a moment before) needs the pid space to wrap meanwhile.
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid <= 1 {
        return; // never signal "every process" (0 is the caller's group, -1 is everything)
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(-pgid, signal) };
    if sent != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, signal, %error, "cannot signal a tool's process group");
        }
    }
}
