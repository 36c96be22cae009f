//! The CLI on a terminal, as a person sees it: the binary runs in a pseudo-terminal, everything it
//! writes is played into a terminal emulator (vt100), and the tests read the screen it leaves.
//! The server runs in the test process; the agent's model is the local stand-in of
//! `tests/it/agent.rs`.

use crate::common;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use tonic::transport::Channel;

use crate::common::TestServer;
use crate::common::model::{StandIn, text, tool_calls};
use crate::common::runs::{RUN_WAIT, cancel};
use nix::fcntl::OFlag;
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use toolstream::agent::openai::OpenAiProvider;
use toolstream::agent::{AgentSettings, ModelProvider};
use toolstream::config::Limits;
use toolstream::pb::run_service_client::RunServiceClient;
use toolstream::pb::{ListRunsRequest, RunState};
use toolstream::server::Server;

const BIN: &str = env!("CARGO_BIN_EXE_toolstream");

/// The terminal's size: tall enough that nothing these tests print scrolls off.
const ROWS: u16 = 40;
const COLS: u16 = 100;

/// A pseudo-terminal of [`ROWS`] by [`COLS`]: its master side and its terminal side, both
/// close-on-exec. Other tests of this process start processes from other threads at any time; a
/// copy of the terminal side inherited by one of them (as `openpty` would leave it, without
/// close-on-exec) would keep the terminal open after `toolstream` exits, and reading the master
/// side would wait for that process instead.
fn open_terminal() -> (PtyMaster, std::fs::File) {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .expect("open a pseudo-terminal");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname_r(&master).expect("the terminal's name");
    // std opens every file close-on-exec.
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&name)
        .expect("open the terminal side");
    let size = libc::winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call.
    let set = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    assert_eq!(set, 0, "set the terminal's size");
    (master, slave)
}

/// Runs `toolstream ARGS` against `server` in a pseudo-terminal (stdout and stderr both on it,
/// as in a shell) until it exits; returns how it exited and the screen it left.
async fn on_terminal(server: &TestServer, args: &[&str]) -> (ExitStatus, Vec<String>) {
    typing_on_terminal(server, args, None).await
}

/// [`on_terminal`] with stdin on the terminal too, where a person types `reply.1` once the
/// screen shows `reply.0`.
async fn typing_on_terminal(
    server: &TestServer,
    args: &[&str],
    reply: Option<(&'static str, &'static str)>,
) -> (ExitStatus, Vec<String>) {
    let then = reply.map(|(shown, typed)| (shown, Then::Type(typed)));
    on_terminal_then(server, args, then).await
}

/// What happens once the screen shows some text.
enum Then {
    /// The person at the terminal types this.
    Type(&'static str),
    /// Something happens elsewhere (the terminal is left alone).
    Act(Box<dyn FnOnce() + Send>),
}

/// [`on_terminal`] with stdin on the terminal too, where `reply.1` happens once the screen shows
/// `reply.0`. A command that has not exited [`RUN_WAIT`] after that (it waits for a reply that
/// does not come) is killed and the test fails, showing the screen.
async fn on_terminal_then(
    server: &TestServer,
    args: &[&str],
    reply: Option<(&'static str, Then)>,
) -> (ExitStatus, Vec<String>) {
    let (master, slave) = open_terminal();
    let mut child = {
        let stdin = match reply {
            Some(_) => Stdio::from(slave.try_clone().expect("dup the terminal")),
            None => Stdio::null(),
        };
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("TOOLSTREAM_ADDR", server.url())
            .env("TERM", "xterm-256color")
            .stdin(stdin)
            .stdout(slave.try_clone().expect("dup the terminal"))
            .stderr(slave);
        command.spawn().expect("start toolstream")
        // The command, and with it this process's copies of the terminal's side, are dropped
        // here: once the child exits, reading the other side ends.
    };
    let mut master = std::fs::File::from(OwnedFd::from(master));
    let mut keyboard = master.try_clone().expect("dup the terminal's master side");
    let mut reply = reply;
    let pid = child.id();
    let (acted, reacted) = tokio::sync::oneshot::channel::<()>();
    let mut acted = Some(acted);
    let reading = tokio::task::spawn_blocking(move || {
        let mut screen = vt100::Parser::new(ROWS, COLS, 0);
        let mut buffer = [0u8; 4096];
        loop {
            match master.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    screen.process(&buffer[..n]);
                    if reply
                        .as_ref()
                        .is_some_and(|(shown, _)| screen.screen().contents().contains(shown))
                        && let Some((_, then)) = reply.take()
                    {
                        match then {
                            Then::Type(typed) => {
                                keyboard.write_all(typed.as_bytes()).expect("type")
                            }
                            Then::Act(act) => act(),
                        }
                        if let Some(acted) = acted.take() {
                            let _ = acted.send(());
                        }
                    }
                }
                // Linux answers EIO once no process holds the terminal's other side.
                Err(error) if error.raw_os_error() == Some(libc::EIO) => break,
                Err(error) => panic!("reading the terminal: {error}"),
            }
        }
        let status = child.wait().expect("wait for toolstream");
        let rows = screen
            .screen()
            .rows(0, COLS)
            .map(|row| row.trim_end().to_owned())
            .collect();
        (status, rows)
    });
    // Without a reply to wait for, the command ends by itself (or the test's own limits apply).
    if reacted.await.is_ok() {
        let mut reading = reading;
        match tokio::time::timeout(RUN_WAIT, &mut reading).await {
            Ok(done) => return done.expect("the terminal reader"),
            Err(_) => {
                // SAFETY: kill(2) takes a pid and a signal; the child is not reaped yet, so the
                // pid is still its own.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                let (_, screen) = reading.await.expect("the terminal reader");
                panic!(
                    "toolstream {args:?} was still running {RUN_WAIT:?} after the reply:\n{}",
                    screen.join("\n")
                );
            }
        }
    }
    reading.await.expect("the terminal reader")
}

/// A server whose agent talks to the stand-in model at `url`.
async fn agent_server(url: &str) -> TestServer {
    approving_agent_server(url, Vec::new()).await
}

/// [`agent_server`] where calls of the tools in `approval_required` wait for a person's approval.
async fn approving_agent_server(url: &str, approval_required: Vec<String>) -> TestServer {
    let root = std::env::current_dir().unwrap();
    let provider: Arc<dyn ModelProvider> = Arc::new(OpenAiProvider::new(url, None).unwrap());
    let settings = AgentSettings {
        provider: Some(provider),
        default_model: Some("standin-model".into()),
        ..AgentSettings::default()
    };
    TestServer::serve(
        Server::new(common::registry_with(&root, vec![]), Limits::default())
            .with_agent(settings)
            .with_approval_required(approval_required),
    )
    .await
}

#[tokio::test]
async fn agent_text_prints_as_whole_lines_above_the_bars() {
    // The answer streams a word at a time, a line break in the middle of a piece, and ends
    // without one.
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 3, "interval_ms": 1}"#)]),
        text(&[
            "The ", "ticks ", "are ", "done:", "\nthree ", "of ", "three", ".",
        ]),
    ])
    .await;
    let server = agent_server(&model.url).await;
    let (status, screen) = on_terminal(
        &server,
        &[
            "agent",
            "tick three times",
            "--tools",
            "ticks",
            "--timeout",
            "60",
        ],
    )
    .await;
    let shown = screen.join("\n");
    assert!(status.success(), "{status:?}\n{shown}");

    // The sentence is on the screen as the model wrote it, each line whole and on its own row.
    let first = screen.iter().position(|row| row == "The ticks are done:");
    let second = screen.iter().position(|row| row == "three of three.");
    let (Some(first), Some(second)) = (first, second) else {
        panic!("the answer is not on whole lines:\n{shown}");
    };
    assert_eq!(second, first + 1, "{shown}");
    // No word of it anywhere else: no row with a piece of text and a bar.
    for (index, row) in screen.iter().enumerate() {
        if index != first && index != second {
            assert!(
                !["The", "ticks are", "three of"]
                    .iter()
                    .any(|word| row.contains(word)),
                "a piece of the text outside its lines, row {index}:\n{shown}"
            );
        }
    }
    // One bar for the run and one line for the call, below the text: no stale copies.
    let bars: Vec<usize> = (0..screen.len())
        .filter(|&index| screen[index].contains(" agent ["))
        .collect();
    assert_eq!(bars.len(), 1, "the run's bar once:\n{shown}");
    assert!(bars[0] > second, "the bars are below the text:\n{shown}");
    assert_eq!(
        screen
            .iter()
            .filter(|row| row.contains("ticks (call_1)"))
            .count(),
        1,
        "the call's line once:\n{shown}"
    );
    assert!(screen[bars[0]].contains("100%"), "{shown}");
}

#[tokio::test]
async fn a_cancelled_runs_bar_shows_no_time_left() {
    let server = TestServer::start().await;
    let runs = RunServiceClient::new(server.channel().await);
    let watcher = async {
        // Once the run has an estimate of its time left, cancel it for everyone.
        common::eventually(RUN_WAIT, "the run has an ETA", || {
            let runs = runs.clone();
            async move { running_with_eta(runs).await.is_some() }
        })
        .await;
        let run_id = running_with_eta(runs.clone()).await.expect("the run");
        cancel(&mut runs.clone(), &run_id).await.expect("CancelRun");
    };
    let ((status, screen), ()) = tokio::join!(
        on_terminal(
            &server,
            &[
                "run",
                "ticks",
                "--arg",
                "count=100000",
                "--arg",
                "interval_ms=20"
            ],
        ),
        watcher
    );
    let shown = screen.join("\n");
    assert!(!status.success(), "{shown}");
    assert!(shown.contains("Cancelled"), "{shown}");
    let bar = screen
        .iter()
        .find(|row| row.contains(" ticks ["))
        .unwrap_or_else(|| panic!("the run's bar stays:\n{shown}"));
    assert!(
        !bar.contains("ETA"),
        "a cancelled run has no time left:\n{shown}"
    );
}

/// The id of the run in progress once its latest progress has an estimate of the time left.
async fn running_with_eta(mut runs: RunServiceClient<Channel>) -> Option<String> {
    let page = runs
        .list_runs(ListRunsRequest {
            state: RunState::Running as i32,
            ..ListRunsRequest::default()
        })
        .await
        .ok()?
        .into_inner();
    let run = page.runs.into_iter().next()?;
    run.progress
        .iter()
        .any(|progress| progress.eta_seconds.is_some())
        .then_some(run.run_id)
}

#[tokio::test]
async fn partial_results_print_as_readable_lines_above_the_bars() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["one.txt", "two.txt"] {
        std::fs::write(dir.path().join(name), name).unwrap();
    }
    let server =
        TestServer::start_with(common::registry_with(dir.path(), vec![]), Limits::default()).await;
    let (status, screen) = on_terminal(
        &server,
        &[
            "run",
            "checksum",
            "--json",
            r#"{"paths":["one.txt","two.txt"]}"#,
        ],
    )
    .await;
    let shown = screen.join("\n");
    assert!(status.success(), "{status:?}\n{shown}");
    // One line per file's entry, as it was appended to the output "files", above the bar.
    let lines: Vec<usize> = (0..screen.len())
        .filter(|&index| screen[index].starts_with("files += {"))
        .collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(screen[lines[0]].contains(r#""path":"one.txt""#), "{shown}");
    assert!(screen[lines[1]].contains(r#""path":"two.txt""#), "{shown}");
    let bar = screen
        .iter()
        .position(|row| row.contains(" checksum ["))
        .unwrap_or_else(|| panic!("no bar:\n{shown}"));
    assert!(lines[1] < bar, "the lines are above the bar:\n{shown}");
}

/// `confirm`: asks "Overwrite report.pdf?" (a boolean) and ends with the answer it got.
fn confirm_tool() -> Arc<dyn toolstream::tools::Tool> {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct NoArgs {}
    Arc::new(toolstream::tools::native::tool_fn(
        "confirm",
        "Asks for a confirmation.",
        |_: NoArgs, progress: toolstream::tools::Progress| async move {
            let answer = progress
                .ask(
                    "Overwrite report.pdf?",
                    Some(serde_json::json!({"type": "boolean"})),
                )
                .await;
            Ok::<_, toolstream::tools::ToolError>(serde_json::json!({
                "outcome": answer.outcome_name(),
                "value": answer.value().cloned(),
            }))
        },
    ))
}

async fn confirm_server() -> TestServer {
    let root = std::env::current_dir().expect("cwd");
    TestServer::start_with(
        common::registry_with(&root, vec![confirm_tool()]),
        Limits::default(),
    )
    .await
}

/// Checks that `confirm` succeeded with its question on the screen once, followed by `after`;
/// returns the screen as text.
fn confirm_asked_once(status: ExitStatus, screen: &[String], after: &str) -> String {
    let shown = screen.join("\n");
    assert!(status.success(), "{status:?}\n{shown}");
    let asked: Vec<&String> = screen
        .iter()
        .filter(|row| row.contains("Overwrite report.pdf?"))
        .collect();
    assert_eq!(
        asked,
        [&format!(
            "? Overwrite report.pdf? [y/n, empty declines] {after}"
        )],
        "{shown}"
    );
    shown
}

#[tokio::test]
async fn a_run_that_asks_is_answered_at_the_prompt() {
    let server = confirm_server().await;
    let (status, screen) = typing_on_terminal(
        &server,
        &["run", "confirm", "--timeout", "60"],
        Some(("? Overwrite report.pdf? [y/n, empty declines]", "y\n")),
    )
    .await;
    // The question and the reply stay on the screen, once; the tool got the answer typed.
    let shown = confirm_asked_once(status, &screen, "y");
    let bars = screen
        .iter()
        .filter(|row| row.contains(" confirm ["))
        .count();
    assert_eq!(bars, 1, "the run's bar once:\n{shown}");
    assert!(shown.contains(r#""outcome": "answered""#), "{shown}");
    assert!(shown.contains(r#""value": true"#), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_answered_elsewhere_is_no_longer_asked() {
    let server = confirm_server().await;
    let channel = server.channel().await;
    let runtime = tokio::runtime::Handle::current();
    // Once the question shows, the run's request is answered over gRPC (as `toolstream respond`
    // or the page would): the command stops asking, says so, and ends with the run.
    let answer_elsewhere = move || {
        runtime.block_on(async move {
            let mut runs = RunServiceClient::new(channel);
            let listed = runs
                .list_runs(ListRunsRequest::default())
                .await
                .expect("ListRuns")
                .into_inner();
            let run = listed.runs.first().expect("the run");
            let request = run.pending_inputs.first().expect("its open request");
            runs.respond_to_run(toolstream::pb::RespondToRunRequest {
                run_id: run.run_id.clone(),
                request_id: request.request_id.clone(),
                value: Some(toolstream::json_proto::json_to_value(serde_json::json!(
                    true
                ))),
                decline: false,
            })
            .await
            .expect("RespondToRun");
        });
    };
    let (status, screen) = on_terminal_then(
        &server,
        &["run", "confirm", "--timeout", "60"],
        Some((
            "? Overwrite report.pdf? [y/n, empty declines]",
            Then::Act(Box::new(answer_elsewhere)),
        )),
    )
    .await;
    let shown = confirm_asked_once(status, &screen, "(answered elsewhere: true)");
    assert!(shown.contains(r#""outcome": "answered""#), "{shown}");
}

#[tokio::test]
async fn no_input_fails_naming_the_request_instead_of_asking() {
    let server = confirm_server().await;
    let (status, screen) = on_terminal(
        &server,
        &["run", "confirm", "--no-input", "--timeout", "60"],
    )
    .await;
    let shown = screen.join("\n");
    assert!(!status.success(), "{shown}");
    assert!(shown.contains("--no-input"), "{shown}");
    assert!(shown.contains("toolstream respond"), "{shown}");
    assert!(shown.contains("input-1"), "{shown}");
    assert!(!shown.contains("? Overwrite"), "not asked:\n{shown}");
}

#[tokio::test]
async fn an_agent_s_approval_is_asked_and_a_no_keeps_the_call_from_running() {
    let model = StandIn::start(vec![
        tool_calls(&[("call_1", "ticks", r#"{"count": 3, "interval_ms": 1}"#)]),
        text(&["Not ticked.\n"]),
    ])
    .await;
    let server = approving_agent_server(&model.url, vec!["ticks".into()]).await;
    let (status, screen) = typing_on_terminal(
        &server,
        &["agent", "tick", "--tools", "ticks", "--timeout", "60"],
        Some(("[y/n, empty declines]", "n\n")),
    )
    .await;
    let shown = screen.join("\n");
    assert!(status.success(), "{status:?}\n{shown}");
    let asked = screen
        .iter()
        .find(|row| row.starts_with("? Allow the call of tool \"ticks\""))
        .unwrap_or_else(|| panic!("the approval is asked:\n{shown}"));
    assert!(asked.ends_with("[y/n, empty declines] n"), "{shown}");
    assert!(screen.iter().any(|row| row == "Not ticked."), "{shown}");
    // The approval shows the call it is about; declined, the call never started (no line of it).
    assert!(
        screen
            .iter()
            .any(|row| row.trim() == r#"{"arguments":{"count":3,"interval_ms":1},"tool":"ticks"}"#),
        "{shown}"
    );
    assert!(
        !screen.iter().any(|row| row.contains("ticks (call_1)")),
        "{shown}"
    );
}
