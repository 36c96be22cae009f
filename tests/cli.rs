//! The `toolstream` binary as a user runs it: `serve`, then the client subcommands against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_toolstream");

/// `toolstream serve` on an ephemeral port, killed with SIGTERM when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(root: &std::path::Path) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
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

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
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
    assert_eq!(
        events[4]["result"]["value"],
        serde_json::json!({"count": 3.0})
    );

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
