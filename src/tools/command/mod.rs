//! Command tools: a program in any language, started once per run, speaking JSON lines.
//!
//! The arguments go to the tool's stdin as one JSON object, then stdin is closed. The tool writes
//! one JSON object per line to stdout ([`protocol`]): progress and partial results as it works (its own, or of
//! sub-tasks it names, which become [`Progress::child`] handles), then `{"result": ...}` or
//! `{"error": "..."}`, and exits. Its stderr goes to the log ([`stderr`]). The process runs in a
//! process group of its own that is stopped, SIGTERM then SIGKILL, whenever the run ends without it
//! ([`ProcessGroup`]): cancelled, past a deadline, or failed on a protocol error. When the server
//! shuts down, [`crate::tools::processes::stop_all`] waits until every such group is killed and
//! reaped.
//!
//! Only the config file can declare a command (`[[tools]]` entries of kind "command", see
//! [`from_entry`]); clients only choose among declared tools and pass arguments. An entry with
//! `describe = true` gets its description and schemas from the command itself ([`describe`]).

pub mod describe;
mod entry;
mod protocol;
mod stderr;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWriteExt};

use self::protocol::{Message, TaskLine};
use self::stderr::StderrTail;
use super::lines::{Line, LineReader};
use super::process_group::ProcessGroup;
use super::{Progress, ProgressUpdate, Tool, ToolError, ToolSpec};

/// Time between SIGTERM and SIGKILL when a tool is stopped.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
/// Longest stdout line accepted; a longer one is a protocol error rather than unbounded memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1024 * 1024;

/// A tool run as a subprocess; built from the config file by [`from_entry`].
#[derive(Debug)]
pub struct CommandTool {
    spec: ToolSpec,
    /// Program and arguments.
    command: Vec<String>,
    /// Added to the server's environment.
    env: BTreeMap<String, String>,
    /// Working directory; the server's when `None`.
    cwd: Option<PathBuf>,
    /// The tool's own time limit (`timeout_secs`).
    timeout: Option<Duration>,
    kill_grace: Duration,
    max_line_bytes: usize,
    /// `asks = true`: stdin stays open after the arguments, for the answers to its questions.
    asks: bool,
}

/// Builds a command tool from its `[[tools]]` entry, asking the command to describe itself when
/// the entry says `describe = true`; the error says what is wrong with the entry.
pub async fn from_entry(entry: &toml::Table, base_dir: &Path) -> Result<Arc<dyn Tool>, String> {
    let entry::Declared {
        mut tool,
        describe,
        has_description,
    } = entry::command_tool(entry, base_dir)?;
    if describe {
        let described = describe::describe(&tool).await?;
        tool.spec.input_schema = described.input_schema;
        if tool.spec.output_schema.is_none() {
            tool.spec.output_schema = described.output_schema;
        }
        if let (false, Some(text)) = (has_description, described.description) {
            tool.spec.description = text;
        }
    }
    Ok(Arc::new(tool))
}

/// How the tool's output ended.
enum Ending {
    Result(Value),
    Error(String),
}

impl CommandTool {
    /// Sets the time a stopped tool gets between SIGTERM and SIGKILL.
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Sets the longest stdout line accepted.
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    fn program(&self) -> &str {
        self.command.first().map_or("", String::as_str)
    }

    async fn run_process(&self, arguments: Value, progress: Progress) -> Result<Value, ToolError> {
        let mut command = tokio::process::Command::new(self.program());
        command.args(self.command.iter().skip(1)).envs(&self.env);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let spawned = ProcessGroup::spawn(command, self.kill_grace).map_err(|e| {
            ToolError::Internal(format!("cannot start `{}`: {e}", self.command.join(" ")))
        })?;
        let mut group = spawned.group;
        let pid = group.pid();
        tracing::debug!(tool = %self.spec.name, pid, "command tool started");

        let mut input = serde_json::to_vec(&arguments)
            .map_err(|e| ToolError::Internal(format!("cannot encode the arguments: {e}")))?;
        input.push(b'\n');
        let mut stdin = spawned.stdin;
        // A tool that asks gets its answers as lines after the arguments; stdin closes when its
        // output ends (the sender is dropped with the reading).
        let (answers, mut to_write) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
        let answers = self.asks.then_some(answers);
        let write_arguments = async move {
            // A tool that exits without reading its arguments closes the pipe: not our error.
            if stdin.write_all(&input).await.is_ok() {
                while let Some(line) = to_write.recv().await {
                    if stdin.write_all(&line).await.is_err() {
                        break;
                    }
                }
            }
            drop(stdin);
        };

        let mut tail = StderrTail::default();
        let mut stdout = LineReader::new(spawned.stdout, self.max_line_bytes);
        // Set by the reader as lines come, so what was read is known even if the reading is cut
        // short below.
        let mut ending: Option<Ending> = None;
        let (status, output_held) = {
            // Stops at the first protocol error, with the process still running.
            let io = async {
                tokio::try_join!(
                    write_arguments.map(Ok),
                    tail.collect(spawned.stderr, &self.spec.name).map(Ok),
                    self.read_stdout(&mut stdout, &progress, &mut ending, answers),
                )
                .map(|_| ())
            };
            tokio::pin!(io);
            tokio::select! {
                read = &mut io => {
                    read?;
                    (self.wait(&mut group).await?, false)
                }
                status = group.wait() => {
                    let status = status.map_err(|e| self.wait_error(e))?;
                    // The tool exited; its output is in the pipes already, unless something it
                    // started outside its group (`setsid`) still holds them open: then what was
                    // read within the grace period is all the run gets.
                    match tokio::time::timeout(self.kill_grace, &mut io).await {
                        Ok(read) => {
                            read?;
                            (status, false)
                        }
                        Err(_) => (status, true),
                    }
                }
            }
        };
        if output_held {
            tracing::warn!(
                tool = %self.spec.name,
                pid,
                "the tool exited, but a process it started outside its process group keeps its \
                 stdout or stderr open; that process is not stopped by toolstream"
            );
            if ending.is_none() {
                return Err(ToolError::Internal(format!(
                    "{}, but a process it started outside its process group keeps its output \
                     open, and no result line came before it exited{}",
                    describe_exit(status),
                    tail.as_suffix()
                )));
            }
        }
        tracing::debug!(tool = %self.spec.name, %status, "command tool exited");
        match (ending, status.success()) {
            (Some(Ending::Error(message)), _) => Err(ToolError::Failed(message)),
            (Some(Ending::Result(value)), true) => Ok(value),
            (Some(Ending::Result(_)), false) => Err(ToolError::Failed(format!(
                "printed its result but then {}{}",
                describe_exit(status),
                tail.as_suffix()
            ))),
            (None, true) => Err(ToolError::Internal(format!(
                "exited without printing a result line ({{\"result\": ...}}){}",
                tail.as_suffix()
            ))),
            (None, false) => Err(ToolError::Failed(format!(
                "{}{}",
                describe_exit(status),
                tail.as_suffix()
            ))),
        }
    }

    /// Reads protocol lines until the end of stdout, forwarding progress as it comes and setting
    /// `ending` when the result or error line comes. Returns early, with the process still
    /// running, on a line that breaks the protocol.
    async fn read_stdout(
        &self,
        stdout: &mut LineReader<impl AsyncRead + Unpin>,
        progress: &Progress,
        ending: &mut Option<Ending>,
        answers: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    ) -> Result<(), ToolError> {
        let mut tasks = SubTasks::default();
        let mut number = 0u64;
        while let Some(line) = stdout
            .next_line()
            .await
            .map_err(|e| ToolError::Internal(format!("cannot read the tool's output: {e}")))?
        {
            number += 1;
            let bytes = match line {
                Line::Complete(bytes) => bytes,
                Line::TooLong => {
                    return Err(ToolError::Internal(format!(
                        "output line {number} is longer than the limit of {} bytes",
                        self.max_line_bytes
                    )));
                }
            };
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let message = protocol::parse(bytes).map_err(|reason| {
                ToolError::Internal(format!(
                    "output line {number} breaks the protocol, {reason}: {}",
                    protocol::preview(bytes)
                ))
            })?;
            if ending.is_some() {
                return Err(ToolError::Internal(format!(
                    "output line {number} comes after the final result or error line: {}",
                    protocol::preview(bytes)
                )));
            }
            let broken = |reason: String| {
                ToolError::Internal(format!(
                    "output line {number} breaks the protocol, {reason}: {}",
                    protocol::preview(bytes)
                ))
            };
            match message {
                Message::Progress { task: None, update } => progress.update(update),
                Message::Progress {
                    task: Some(task),
                    update,
                } => tasks.report(progress, *task, update).map_err(broken)?,
                // A command tool cannot be answered: one too large fails the call, naming the
                // limit.
                Message::Partial(output) => progress.partial_output(output)?,
                Message::TaskPartial { task, output } => {
                    tasks.open(&task).map_err(broken)?.partial_output(output)?;
                }
                Message::Result(value) => *ending = Some(Ending::Result(value)),
                Message::Error(error) => *ending = Some(Ending::Error(error)),
                Message::Ask { id, prompt, schema } => {
                    let Some(answers) = &answers else {
                        return Err(ToolError::Internal(format!(
                            "output line {number} asks a question, but the tool's [[tools]] \
                             entry does not say `asks = true`, so its stdin is closed and it \
                             could not read the answer"
                        )));
                    };
                    // The tool waits for the answer; its output waits in the pipe meanwhile.
                    let answer = progress.ask(prompt, schema).await;
                    // A tool that stopped reading is not our error: its output tells.
                    let _ = answers.send(protocol::answer_line(&id, &answer)).await;
                }
            }
        }
        // Sub-tasks still open end with the output, before the result.
        tasks.end_open().await;
        Ok(())
    }

    async fn wait(&self, group: &mut ProcessGroup) -> Result<ExitStatus, ToolError> {
        group.wait().await.map_err(|e| self.wait_error(e))
    }

    fn wait_error(&self, error: std::io::Error) -> ToolError {
        ToolError::Internal(format!("cannot wait for the tool's process: {error}"))
    }
}

impl Tool for CommandTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn run(&self, arguments: Value, progress: Progress) -> BoxFuture<'_, Result<Value, ToolError>> {
        async move {
            let Some(limit) = self.timeout else {
                return self.run_process(arguments, progress).await;
            };
            // On timeout the process future is dropped, which stops the process group.
            tokio::time::timeout(limit, self.run_process(arguments, progress))
                .await
                .unwrap_or_else(|_| {
                    Err(ToolError::DeadlineExceeded(format!(
                        "did not finish within its timeout of {} s (timeout_secs)",
                        limit.as_secs()
                    )))
                })
        }
        .boxed()
    }
}

/// The sub-tasks a tool's output made, by the tool's names for them.
#[derive(Default)]
struct SubTasks {
    tasks: HashMap<String, SubTaskState>,
}

enum SubTaskState {
    Open(Progress),
    Done,
}

impl SubTasks {
    /// Applies a sub-task's line: makes the sub-task on its first line (under its parent, as a
    /// [`Progress::child`]), reports the rest, and finishes it on `done`.
    fn report(
        &mut self,
        progress: &Progress,
        task: TaskLine,
        update: ProgressUpdate,
    ) -> Result<(), String> {
        let handle = match self.tasks.get(&task.id) {
            Some(SubTaskState::Open(handle)) => handle.clone(),
            Some(SubTaskState::Done) => {
                return Err(format!("task {:?} is named after it was done", task.id));
            }
            None => {
                let parent = match task.parent.as_str() {
                    "" => progress,
                    parent => match self.tasks.get(parent) {
                        Some(SubTaskState::Open(handle)) => handle,
                        Some(SubTaskState::Done) => {
                            return Err(format!(
                                "task {:?} names task {parent:?} as its parent after it was done",
                                task.id
                            ));
                        }
                        None => {
                            return Err(format!(
                                "task {:?} names task {parent:?} as its parent, which no earlier \
                                 line made",
                                task.id
                            ));
                        }
                    },
                };
                let label = task.label.clone().unwrap_or_else(|| task.id.clone());
                let handle = parent.child(label, task.weight.unwrap_or(1.0));
                self.tasks
                    .insert(task.id.clone(), SubTaskState::Open(handle.clone()));
                handle
            }
        };
        if !update.is_empty() {
            handle.update(update);
        }
        if task.done {
            self.tasks.insert(task.id, SubTaskState::Done);
            handle.finish();
        }
        Ok(())
    }
}

impl SubTasks {
    /// The handle of the open sub-task `id`, for a line that names it (a partial result of it).
    fn open(&self, id: &str) -> Result<&Progress, String> {
        match self.tasks.get(id) {
            Some(SubTaskState::Open(handle)) => Ok(handle),
            Some(SubTaskState::Done) => {
                Err(format!("partial.task {id:?} is named after it was done"))
            }
            None => Err(format!(
                "partial.task {id:?} names a task that no earlier line made"
            )),
        }
    }

    /// Ends the sub-tasks still open (their last handles go here), a batch at a time with a
    /// yield between batches: each end is a progress event of the run, and a tool that leaves
    /// thousands open must not hold a runtime worker for all of them in one poll.
    async fn end_open(self) {
        const BATCH: usize = 256;
        let open = self.tasks.into_values().filter_map(|state| match state {
            SubTaskState::Open(handle) => Some(handle),
            SubTaskState::Done => None,
        });
        for (ended, handle) in open.enumerate() {
            drop(handle);
            if (ended + 1) % BATCH == 0 {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// "exited with code 3" or "was killed by signal 9".
fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::progress::{ProgressSink, SubTask};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The tool's own sink: its sub-tasks' sinks count those that reported their end.
    struct EndCounter(Arc<AtomicUsize>);

    impl ProgressSink for EndCounter {
        fn report(&self, _update: ProgressUpdate) {}

        fn task(&self, _task: &SubTask) -> Arc<dyn ProgressSink> {
            Arc::new(SubTaskEnds(Arc::clone(&self.0)))
        }
    }

    struct SubTaskEnds(Arc<AtomicUsize>);

    impl ProgressSink for SubTaskEnds {
        fn report(&self, update: ProgressUpdate) {
            if update.fraction == Some(1.0) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn open_sub_tasks_end_in_batches_letting_other_tasks_run_between() {
        let ended = Arc::new(AtomicUsize::new(0));
        let progress = Progress::new(Arc::new(EndCounter(Arc::clone(&ended))));
        let mut tasks = SubTasks::default();
        for i in 0..2_000 {
            let line = TaskLine {
                id: format!("t{i}"),
                parent: String::new(),
                label: None,
                weight: None,
                done: false,
            };
            tasks
                .report(&progress, line, ProgressUpdate::default())
                .unwrap();
        }
        assert_eq!(ended.load(Ordering::SeqCst), 0);
        // On one thread, this task runs only when the ending yields.
        let seen = Arc::clone(&ended);
        let other = tokio::spawn(async move { seen.load(Ordering::SeqCst) });
        tasks.end_open().await;
        assert_eq!(ended.load(Ordering::SeqCst), 2_000);
        let ended_when_the_other_ran = other.await.unwrap();
        assert!(
            ended_when_the_other_ran < 2_000,
            "the other task ran only after all {ended_when_the_other_ran} ended"
        );
    }
}
