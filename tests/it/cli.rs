//! The `toolstream` binary as a user runs it: `serve`, then the client subcommands against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_toolstream");

/// How long a test waits for something that should happen at once before it fails. A bound on
/// a failure, never a pause: nothing waits for it to pass.
const LIMIT: Duration = Duration::from_secs(30);

/// `toolstream serve` on an ephemeral port, killed with SIGTERM when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(root: &std::path::Path) -> Served {
        Served::start_with(root, &[])
    }

    /// `serve` with more arguments (`--config FILE`).
    fn start_with(root: &std::path::Path, args: &[&std::ffi::OsStr]) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .args(args)
            .env("TOOLSTREAM_LOG_FORMAT", "json")
            .env_remove("TOOLSTREAM_CONFIG")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start toolstream serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .unwrap();
            let Ok(log) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if log["fields"]["message"] == "toolstream serving" {
                break log["fields"]["listen"].as_str().unwrap().to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Served { child, addr }
    }

    fn client(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("TOOLSTREAM_ADDR", &self.addr)
            .output()
            .expect("run client subcommand")
    }

    /// A client subcommand that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.client(args);
        assert!(
            output.status.success(),
            "toolstream {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("stdout is UTF-8")
    }

    /// A client subcommand that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.client(args);
        assert!(
            !output.status.success(),
            "toolstream {args:?} should fail; printed {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// `run ... --detach`: the id it prints, checked to be all it prints.
    fn detach(&self, tool: &str, args: &[&str]) -> String {
        let mut command = vec!["run", tool, "--detach"];
        for arg in args {
            command.extend(["--arg", arg]);
        }
        let stdout = self.ok(&command);
        let id = stdout.trim_end_matches('\n');
        assert!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "run --detach prints the run id and nothing else: {stdout:?}"
        );
        id.to_owned()
    }

    /// `get ID` as JSON.
    fn get(&self, run_id: &str) -> Value {
        serde_json::from_str(&self.ok(&["get", run_id])).expect("get prints the run as JSON")
    }

    /// The ids `runs ARGS` lists, in its order.
    fn run_ids(&self, args: &[&str]) -> Vec<String> {
        let mut command = vec!["runs"];
        command.extend(args);
        self.ok(&command)
            .lines()
            .map(|line| {
                let run: Value = serde_json::from_str(line).expect("each line is a run as JSON");
                run["runId"].as_str().expect("runId").to_owned()
            })
            .collect()
    }

    /// A client subcommand left running, its stdout read line by line as it prints.
    fn spawn(&self, args: &[&str]) -> Following {
        let mut child = Command::new(BIN)
            .args(args)
            .env("TOOLSTREAM_ADDR", &self.addr)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start client subcommand");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Following {
            child: Some(child),
            lines,
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // A test that failed before `terminate` leaves no server behind (after it, a no-op).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client subcommand still running (`watch`, or `run` without `--detach`).
struct Following {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl Following {
    /// The next JSON line it prints.
    fn next_json(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(LIMIT)
            .expect("the client prints its next event");
        serde_json::from_str(&line).expect("each line is JSON")
    }

    /// Waits for it to exit: its status and its stderr.
    fn wait(mut self) -> (ExitStatus, String) {
        let output = self
            .child
            .take()
            .unwrap()
            .wait_with_output()
            .expect("wait for the client");
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asks `probe` again and again until it answers. Each probe runs a client process, which
/// paces the loop; the test fails after [`LIMIT`].
fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(answer) = probe() {
            return answer;
        }
        assert!(start.elapsed() < LIMIT, "timed out waiting for: {what}");
    }
}

/// A 64-bit number of the canonical JSON: a string, absent when 0.
fn number(value: &Value) -> u64 {
    value
        .as_str()
        .map_or(0, |text| text.parse().expect("a 64-bit number as a string"))
}

/// An event line's sequence (0 for gaps and heartbeats, which canonical JSON leaves out).
fn seq(event: &Value) -> u64 {
    number(&event["sequence"])
}

fn sequences(events: &[Value]) -> Vec<u64> {
    events.iter().map(seq).collect()
}

fn strictly_increasing(numbers: &[u64]) -> bool {
    numbers.windows(2).all(|pair| pair[0] < pair[1])
}

/// The kind of a RunEvent line: the one `event` oneof key it carries.
fn event_kind(event: &Value) -> &'static str {
    [
        "started",
        "progress",
        "result",
        "toolCallStarted",
        "toolCallFinished",
        "message",
        "gap",
        "heartbeat",
    ]
    .into_iter()
    .find(|kind| event.get(*kind).is_some())
    .unwrap_or_else(|| panic!("no event kind in {event}"))
}

fn json_lines(output: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

#[test]
fn serve_run_tools_health_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello\n").unwrap();
    let served = Served::start(dir.path());

    let tools = served.client(&["tools"]);
    assert!(tools.status.success());
    let listing = String::from_utf8_lossy(&tools.stdout);
    assert!(
        listing.contains("ticks") && listing.contains("checksum"),
        "{listing}"
    );
    // Each tool's arguments, with their types, under it; the required ones first.
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    let ticks = rows.iter().position(|row| row[0] == "ticks").unwrap();
    assert_eq!(
        rows[ticks + 1][..3],
        ["count", "integer,", "required"],
        "{listing}"
    );
    assert_eq!(
        rows[ticks + 2][..2],
        ["interval_ms", "integer"],
        "{listing}"
    );
    assert!(
        listing.contains(r#"algorithm  "sha256" | "sha512""#),
        "{listing}"
    );

    // stdout is not a terminal here: JSON lines instead of a bar.
    let run = served.client(&["run", "ticks", "--arg", "count=3", "--arg", "interval_ms=1"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Each line is the canonical proto3 JSON of a RunEvent, as the HTTP routes send it.
    let events = json_lines(&run);
    let types: Vec<&str> = events.iter().map(event_kind).collect();
    assert_eq!(
        types,
        ["started", "progress", "progress", "progress", "result"]
    );
    assert_eq!(events[1]["sequence"], "2");
    // Integers read as integers (a `Struct` holds doubles; one that is whole is written whole).
    assert_eq!(
        events[4]["result"]["value"],
        serde_json::json!({"count": 3})
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains(r#"{"count":3}"#), "{stdout}");
    assert!(stdout.contains(r#""progress":1,"#), "{stdout}");

    let run = served.client(&["run", "checksum", "--json", r#"{"paths":["hello.txt"]}"#]);
    assert!(run.status.success());
    let events = json_lines(&run);
    let result = events.last().unwrap();
    assert_eq!(
        result["result"]["value"]["files"][0]["sha256"],
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    );

    let failed = served.client(&["run", "ticks", "--arg", "count=many"]);
    assert!(!failed.status.success());
    let message = String::from_utf8_lossy(&failed.stderr);
    assert!(
        message.contains("InvalidArgument") && message.contains("count"),
        "{message}"
    );

    let failed = served.client(&["run", "checksum", "--json", "[1]"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("JSON object"));

    // A tool name that is wrong says how to find the right one.
    let message = served.fails(&["run", "tick"]);
    assert!(
        message.contains("unknown tool \"tick\"") && message.contains("`toolstream tools`"),
        "{message}"
    );

    let health = served.client(&["health"]);
    assert!(health.status.success());
    assert_eq!(
        String::from_utf8_lossy(&health.stdout).trim(),
        "server: SERVING"
    );

    assert!(served.terminate().success(), "SIGTERM ends serve cleanly");
}

#[test]
fn client_reports_an_unreachable_server() {
    let output = Command::new(BIN)
        .args(["tools", "--addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("cannot connect to http://127.0.0.1:1"),
        "{message}"
    );
    // Each cause once: wrappers that repeat their cause's words are left out.
    let causes: Vec<&str> = message.trim_end().split(": ").collect();
    assert!(
        causes.windows(2).all(|pair| pair[0] != pair[1]),
        "{message}"
    );
}

#[test]
fn help_shows_each_default_once() {
    for command in ["run", "watch"] {
        let output = Command::new(BIN)
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        let heartbeat = help
            .lines()
            .find(|line| line.contains("--heartbeat-ms"))
            .unwrap_or_else(|| panic!("{help}"));
        assert_eq!(heartbeat.matches("[default:").count(), 1, "{heartbeat}");
        assert!(heartbeat.ends_with("[default: none]"), "{heartbeat}");
    }
}

#[test]
fn serve_help_shows_once_each_default_the_configuration_applies() {
    let output = Command::new(BIN)
        .args(["serve", "--help"])
        .env_remove("TOOLSTREAM_CONFIG")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    // The help of a flag is the line after the one naming it.
    let shown = |flag: &str| -> String {
        let mut lines = help.lines();
        lines
            .find(|line| line.trim_start().starts_with(&format!("{flag} ")))
            .unwrap_or_else(|| panic!("no {flag} in {help}"));
        let line = lines.next().unwrap_or_default();
        assert_eq!(line.matches("[default:").count(), 1, "{flag}: {line}");
        let (_, default) = line.split_once("[default: ").unwrap();
        default.trim_end().trim_end_matches(']').to_owned()
    };
    // What the server runs with when neither a flag, its variable nor a file sets anything.
    let applied = toolstream::config::Config::load(None, Default::default()).unwrap();
    let cases = [
        ("--listen", applied.listen.to_string()),
        ("--max-runs", applied.limits.max_concurrent_runs.to_string()),
        (
            "--grace-period-secs",
            applied.limits.grace_period.as_secs().to_string(),
        ),
        (
            "--max-message-bytes",
            applied.limits.max_message_bytes.to_string(),
        ),
        (
            "--max-steps",
            toolstream::agent::DEFAULT_MAX_STEPS.to_string(),
        ),
        (
            "--log-format",
            format!("{:?}", applied.log_format).to_lowercase(),
        ),
        ("--store", applied.store.url.clone()),
    ];
    for (flag, default) in cases {
        assert_eq!(shown(flag), default, "{flag}");
    }
}

#[test]
fn serve_writes_plain_logs_when_stderr_is_not_a_terminal() {
    // A pipe, as for a log file or a collector: no colour codes in the human format.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "human"])
        .arg("--root")
        .arg(dir.path())
        .env_remove("TOOLSTREAM_CONFIG")
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut logged = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let serving = line.contains("toolstream serving");
        logged.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        logged
            .iter()
            .any(|line| line.contains("toolstream serving")),
        "{logged:?}"
    );
    assert!(
        logged.iter().all(|line| !line.contains('\x1b')),
        "colour codes in the log: {logged:?}"
    );
}

#[test]
fn serve_refuses_a_bad_config_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "listen = 5\n").unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("bad.toml") && message.contains("listen"),
        "{message}"
    );
}

#[test]
fn a_detached_run_goes_on_and_get_and_watch_find_it_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());

    let id = served.detach("ticks", &["count=5", "interval_ms=5"]);
    // The client has exited; the run goes on in the server and succeeds.
    let run = until("the detached run succeeds", || {
        let run = served.get(&id);
        (run["state"] == "RUN_STATE_SUCCEEDED").then_some(run)
    });
    assert_eq!(run["runId"], id.as_str());
    assert_eq!(run["tool"], "ticks");
    assert_eq!(run["result"], json!({"count": 5}));
    assert_eq!(number(&run["lastSequence"]), 7);
    assert_eq!(run["progress"][0]["progress"], 1.0);
    // RFC 3339 times of one clock and format compare as text.
    assert!(run["endTime"].as_str().unwrap() >= run["createTime"].as_str().unwrap());

    // Watching a finished run replays it: JSON lines ending with the result, exit 0.
    let watched = served.client(&["watch", &id]);
    assert!(watched.status.success());
    let events = json_lines(&watched);
    assert_eq!(event_kind(events.first().unwrap()), "started");
    let last = events.last().unwrap();
    assert_eq!(event_kind(last), "result");
    assert_eq!(last["result"]["value"], json!({"count": 5}));
    assert_eq!(seq(last), 7);
    assert!(strictly_increasing(&sequences(&events)), "{events:?}");
    assert!(events.iter().all(|e| e["runId"] == id.as_str()));

    // From a cursor: only what comes after it.
    let rest = json_lines(&served.client(&["watch", &id, "--after", "5"]));
    assert_eq!(sequences(&rest), [6, 7]);
    assert_eq!(event_kind(&rest[1]), "result");

    assert!(served.terminate().success());
}

#[test]
fn watch_latest_follows_a_long_run_and_cancel_ends_it_for_every_stream() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let id = served.detach("ticks", &["count=10000000", "interval_ms=2"]);

    // Let it build some history for --latest to skip.
    let produced = until("the run has made progress", || {
        let run = served.get(&id);
        assert_eq!(run["state"], "RUN_STATE_RUNNING");
        let last = number(&run["lastSequence"]);
        (last >= 20).then_some(last)
    });
    let watching = served.spawn(&["watch", &id, "--latest"]);
    let started = watching.next_json();
    assert_eq!((event_kind(&started), seq(&started)), ("started", 1));
    let latest = watching.next_json();
    assert_eq!(event_kind(&latest), "progress");
    assert!(
        seq(&latest) >= produced,
        "--latest starts at the latest progress ({produced} events were produced), not at \
         the history: {latest}"
    );
    let live = watching.next_json();
    assert!(seq(&live) > seq(&latest));

    let cancelled: Value = serde_json::from_str(&served.ok(&["cancel", &id])).unwrap();
    assert_eq!(cancelled["state"], "RUN_STATE_CANCELLED");
    assert_eq!(cancelled["errorCode"], 1, "google.rpc.Code CANCELLED");
    assert!(cancelled["endTime"].is_string());

    // The live watcher ends with the run's status and a non-zero exit.
    let (status, stderr) = watching.wait();
    assert!(!status.success());
    assert!(stderr.contains("Cancelled"), "{stderr}");

    // So does a watch begun after the end: the history, then CANCELLED.
    let again = served.client(&["watch", &id]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("Cancelled") && stderr.contains("CancelRun"),
        "{stderr}"
    );
    let replayed = json_lines(&again);
    assert_eq!(event_kind(&replayed[0]), "started");
    assert!(replayed.iter().all(|e| event_kind(e) != "result"));
    assert!(strictly_increasing(&sequences(&replayed)));

    // Cancelling again changes nothing.
    let twice: Value = serde_json::from_str(&served.ok(&["cancel", &id])).unwrap();
    assert_eq!(twice["state"], "RUN_STATE_CANCELLED");
    assert_eq!(twice["endTime"], cancelled["endTime"]);
    assert_eq!(served.get(&id)["state"], "RUN_STATE_CANCELLED");

    assert!(served.terminate().success());
}

#[test]
fn run_and_watch_send_heartbeats_while_a_run_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());

    // A run that says nothing for ten minutes after it starts.
    let running = served.spawn(&[
        "run",
        "ticks",
        "--arg",
        "count=1",
        "--arg",
        "interval_ms=600000",
        "--heartbeat-ms",
        "20",
    ]);
    let started = running.next_json();
    assert_eq!(event_kind(&started), "started");
    let id = started["runId"].as_str().unwrap().to_owned();
    let heartbeat = running.next_json();
    assert_eq!(event_kind(&heartbeat), "heartbeat");
    assert_eq!(seq(&heartbeat), 0, "heartbeats are not stored");
    assert_eq!(number(&heartbeat["heartbeat"]["lastSequence"]), 1);

    let watching = served.spawn(&["watch", &id, "--latest", "--heartbeat-ms", "20"]);
    assert_eq!(event_kind(&watching.next_json()), "started");
    let heartbeat = watching.next_json();
    assert_eq!(event_kind(&heartbeat), "heartbeat");
    assert_eq!(number(&heartbeat["heartbeat"]["lastSequence"]), 1);

    served.ok(&["cancel", &id]);
    for following in [running, watching] {
        let (status, stderr) = following.wait();
        assert!(!status.success());
        assert!(stderr.contains("Cancelled"), "{stderr}");
    }
    assert!(served.terminate().success());
}

#[test]
fn watch_marks_events_the_server_no_longer_holds_with_a_gap_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("toolstream.toml");
    std::fs::write(&config, "[runs]\nmax_events_per_run = 10\n").unwrap();
    let served = Served::start_with(dir.path(), &["--config".as_ref(), config.as_os_str()]);

    let id = served.detach("ticks", &["count=50", "interval_ms=1"]);
    until("the run succeeds", || {
        (served.get(&id)["state"] == "RUN_STATE_SUCCEEDED").then_some(())
    });
    // 52 events (started, 50 progress, result); the log holds 10: the started event, which is
    // never evicted, and the last 9.
    let watched = served.client(&["watch", &id]);
    assert!(watched.status.success());
    let events = json_lines(&watched);
    assert_eq!(event_kind(&events[0]), "started");
    let gap = &events[1];
    assert_eq!(event_kind(gap), "gap");
    assert_eq!(seq(gap), 0, "a gap is not a stored event");
    assert_eq!(
        (
            number(&gap["gap"]["fromSequence"]),
            number(&gap["gap"]["toSequence"])
        ),
        (2, 43)
    );
    assert!(
        gap["gap"]["reason"].as_str().unwrap().contains("10 events"),
        "{gap}"
    );
    assert_eq!(sequences(&events[2..]), (44..=52).collect::<Vec<_>>());
    assert_eq!(event_kind(events.last().unwrap()), "result");
    assert!(served.terminate().success());
}

#[test]
fn runs_lists_newest_first_filtered_by_tool_and_state_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello\n").unwrap();
    let served = Served::start(dir.path());

    let first = served.detach("ticks", &["count=1", "interval_ms=1"]);
    until("the first run succeeds", || {
        (served.get(&first)["state"] == "RUN_STATE_SUCCEEDED").then_some(())
    });
    let checksum = served.client(&["run", "checksum", "--json", r#"{"paths":["hello.txt"]}"#]);
    assert!(checksum.status.success());
    let second = json_lines(&checksum)[0]["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    let third = served.detach("ticks", &["count=10000000", "interval_ms=5"]);

    let (first, second, third) = (first.as_str(), second.as_str(), third.as_str());
    assert_eq!(served.run_ids(&[]), [third, second, first]);
    assert_eq!(served.run_ids(&["--tool", "ticks"]), [third, first]);
    assert_eq!(served.run_ids(&["--tool", "checksum"]), [second]);
    assert_eq!(
        served.run_ids(&["--tool", "no_such_tool"]),
        Vec::<String>::new()
    );
    assert_eq!(served.run_ids(&["--state", "running"]), [third]);
    assert_eq!(
        served.run_ids(&["--state", "succeeded", "--tool", "ticks"]),
        [first]
    );
    // One page, then every page.
    assert_eq!(served.run_ids(&["--page-size", "1"]), [third]);
    assert_eq!(
        served.run_ids(&["--page-size", "1", "--all"]),
        [third, second, first]
    );

    let listed: Vec<Value> = json_lines(&served.client(&["runs", "--tool", "checksum"]));
    assert_eq!(listed[0]["state"], "RUN_STATE_SUCCEEDED");
    assert_eq!(
        listed[0].get("agent"),
        None,
        "false is the default: left out"
    );
    assert_eq!(listed[0]["result"]["total_bytes"], 6.0);

    served.ok(&["cancel", third]);
    assert!(served.terminate().success());
}

#[test]
fn get_watch_and_cancel_of_an_unknown_run_fail_naming_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    for command in ["get", "watch", "cancel"] {
        let stderr = served.fails(&[command, "no-such-run-4711"]);
        assert!(
            stderr.contains("no-such-run-4711") && stderr.contains("no run"),
            "{command}: {stderr}"
        );
    }
    assert!(served.terminate().success());
}
