//! A tool's process, started in a process group of its own so that everything it starts can be
//! stopped with it, and stopped for sure when toolstream lets go of it.
//!
//! Stopping is SIGTERM to the whole group, then SIGKILL after a grace period. A run is cancelled by
//! dropping its future, so stopping must work from `Drop`: the guard sends SIGTERM at once and
//! hands the child to a small task that escalates and reaps it, so no zombie stays behind. Two
//! shapes:
//!
//! - [`ProcessGroup`]: a command tool's process, for one run; the run waits for it.
//! - [`LongLivedGroup`]: an MCP server, shared by runs; a task reaps it whenever it exits and
//!   stops it when the handle is dropped.
//!
//! Both register with [`super::processes`], whose background tasks these are, so that
//! [`super::processes::stop_all`] can finish the job at shutdown. Being in its own group also keeps
//! a tool out of the terminal's foreground group: Ctrl-C reaches toolstream, which then stops its
//! tools in order, instead of killing them all at once.
//!
//! If toolstream itself dies without stopping its tools (`kill -9`, a crash, the OOM killer), the
//! kernel sends each tool's process SIGKILL: it is started with a parent-death signal
//! (`PR_SET_PDEATHSIG`). That signal reaches only the process toolstream started, not the rest of
//! its group: processes the tool started live on, orphaned, unless they end on their own (a
//! process that writes to the tool's stdout or stderr gets SIGPIPE, the reading end having died
//! with toolstream). The kernel sends the signal when the *thread* that started the process exits,
//! not the process: tools are started from async code, which runs on the runtime's worker threads
//! (or the thread that drives `block_on`), which live as long as the runtime. Never start one from
//! a `spawn_blocking` thread: those end after some idle seconds, and the tool would be killed then.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::Signal;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::processes::{self, Registration, signal_group};

/// A started tool process and the pipes to talk to it.
pub struct Spawned<G> {
    /// Stops the process group when dropped, unless the process already exited.
    pub group: G,
    /// Where the arguments go.
    pub stdin: ChildStdin,
    /// The protocol lines.
    pub stdout: ChildStdout,
    /// The log lines.
    pub stderr: ChildStderr,
}

/// The tool's process group, led by the tool's process, for one run.
pub struct ProcessGroup {
    /// `None` once the leader has been reaped (or handed to the reaper task).
    child: Option<Child>,
    /// The leader's pid, which is also the group's id.
    pgid: libc::pid_t,
    grace: Duration,
    /// Taken when the leader is reaped, or handed to the reaper task with the child.
    registration: Option<Registration>,
}

impl ProcessGroup {
    /// Starts `command` with piped stdio in a new process group.
    pub fn spawn(command: Command, grace: Duration) -> io::Result<Spawned<ProcessGroup>> {
        let (child, pgid, registration, pipes) = start(command, false)?;
        Ok(pipes.with(ProcessGroup {
            child: Some(child),
            pgid,
            grace,
            registration: Some(registration),
        }))
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
        if let Some(registration) = self.registration.take() {
            registration.reaped();
        }
        Ok(status)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let (Some(child), Some(registration)) = (self.child.take(), self.registration.take())
        else {
            return;
        };
        signal_group(self.pgid, libc::SIGTERM);
        // Outside a runtime the task is dropped unrun, and the registration sends SIGKILL; tokio
        // reaps dropped children in the background.
        processes::spawn(stop(child, self.pgid, self.grace, registration));
    }
}

/// Gives the group `grace` to exit after SIGTERM (already sent), then kills what is left and
/// reaps the leader.
async fn stop(mut child: Child, pgid: libc::pid_t, grace: Duration, registration: Registration) {
    let _ = tokio::time::timeout(grace, child.wait()).await;
    // Also catches members that ignored SIGTERM while the leader obeyed it.
    reap(child, pgid, registration).await;
}

/// Kills what is left of the group and reaps its leader.
async fn reap(mut child: Child, pgid: libc::pid_t, registration: Registration) {
    signal_group(pgid, libc::SIGKILL);
    match child.wait().await {
        Ok(_) => registration.reaped(),
        // The registration's drop sends SIGKILL once more; nothing else can be done.
        Err(error) => tracing::warn!(pid = pgid, %error, "cannot reap a stopped tool process"),
    }
}

/// A long-lived process group (an MCP server): a tracked task reaps it as soon as it exits, and
/// stops it (SIGTERM, then SIGKILL after the grace period) when this handle is dropped.
/// [`super::processes::stop_all`] stops it at shutdown.
pub struct LongLivedGroup {
    pgid: libc::pid_t,
    _stop: DropGuard,
}

impl LongLivedGroup {
    /// Starts `command` with piped stdio in a new process group. Needs a runtime.
    pub fn spawn(command: Command, grace: Duration) -> io::Result<Spawned<LongLivedGroup>> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "a long-lived process needs a tokio runtime",
            ));
        }
        let (child, pgid, registration, pipes) = start(command, true)?;
        let stop = CancellationToken::new();
        processes::spawn(watch(child, pgid, grace, stop.clone(), registration));
        Ok(pipes.with(LongLivedGroup {
            pgid,
            _stop: stop.drop_guard(),
        }))
    }

    /// The leader's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pgid
    }
}

/// Reaps the group's leader when it exits, or stops the group when `stop` is cancelled.
async fn watch(
    mut child: Child,
    pgid: libc::pid_t,
    grace: Duration,
    stop: CancellationToken,
    registration: Registration,
) {
    tokio::select! {
        exited = child.wait() => {
            tracing::debug!(pid = pgid, ?exited, "a long-lived tool process exited");
        }
        () = stop.cancelled() => {
            signal_group(pgid, libc::SIGTERM);
            let _ = tokio::time::timeout(grace, child.wait()).await;
        }
    }
    reap(child, pgid, registration).await;
}

/// The pipes of a child just started.
struct Pipes {
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: ChildStderr,
}

impl Pipes {
    fn with<G>(self, group: G) -> Spawned<G> {
        Spawned {
            group,
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

/// Starts `command` with piped stdio as the leader of a new process group and registers the group.
fn start(
    mut command: Command,
    long_lived: bool,
) -> io::Result<(Child, libc::pid_t, Registration, Pipes)> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // The guards here do better than tokio's kill-on-drop: the whole group, politely.
        .kill_on_drop(false);
    let server = rustix::process::getpid();
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: it makes two system calls (rustix issues them directly, without locks)
    // and allocates nothing (an errno is an `io::Error` without allocation).
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The signal is only armed from now on: if toolstream died since the fork, the child
            // was already handed to another parent and must not run on for nobody.
            if rustix::process::getppid() != Some(server) {
                return Err(Errno::SRCH.into());
            }
            Ok(())
        });
    }
    let what = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let mut child = command.spawn()?;
    let Some(pgid) = child.id().and_then(|id| libc::pid_t::try_from(id).ok()) else {
        return Err(io::Error::other("the tool exited before its pid was known"));
    };
    // From here on, the registration stops the group if anything below fails.
    let registration = processes::register(pgid, what, long_lived);
    let missing = || io::Error::other("a pipe to the tool was not created");
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    Ok((
        child,
        pgid,
        registration,
        Pipes {
            stdin,
            stdout,
            stderr,
        },
    ))
}
