//! `scripts/cluster`: a local fleet (redis-server and replicas) whose replicas share their runs,
//! and which leaves no process behind when it is told to stop; also with Redis over TLS in a
//! cluster of three primaries (`--redis-tls --redis-cluster`).

use std::io::{BufRead, BufReader, Lines};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::common::binary::{BIN, toolstream};
use serde_json::Value;

/// The script, running; sent SIGTERM when dropped so a failing test leaves no fleet behind.
struct Cluster {
    script: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// What it printed so far, for failure messages.
    printed: String,
}

impl Cluster {
    /// Runs `scripts/cluster <options> <replicas> <first_port>` against the test build of the
    /// binary.
    fn start(options: &[&str], replicas: usize, first_port: u16) -> Cluster {
        let mut command = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TOOLSTREAM_") {
                command.env_remove(name);
            }
        }
        let mut script = command
            .args(options)
            .args([replicas.to_string(), first_port.to_string()])
            .env("TOOLSTREAM_BIN", BIN)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run scripts/cluster");
        let lines = BufReader::new(script.stdout.take().unwrap()).lines();
        Cluster {
            script,
            lines,
            printed: String::new(),
        }
    }

    /// Reads what the script prints until a line starting with `marker`, and returns that line.
    fn read_until(&mut self, marker: &str) -> String {
        for line in self.lines.by_ref() {
            let line = line.expect("the script's output");
            self.printed.push_str(&line);
            self.printed.push('\n');
            if line.starts_with(marker) {
                return line;
            }
        }
        panic!(
            "scripts/cluster ended without printing {marker:?}:\n{}",
            self.printed
        );
    }

    fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.script.id()).unwrap();
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(None) = self.script.try_wait() {
            self.terminate();
            let _ = self.script.wait();
        }
    }
}

/// A port `p` with `p + 1` free too (the OS chose `p`).
fn two_free_ports() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// The number after `(pid ` in a line the script printed.
fn pid_in(line: &str) -> libc::pid_t {
    let (_, rest) = line.split_once("(pid ").expect("a pid on the line");
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("a pid")
}

fn is_running(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// `toolstream <args>` as a client; its stdout, failing the test when it exits non-zero.
fn client(args: &[&str]) -> String {
    let output = toolstream(Path::new(env!("CARGO_MANIFEST_DIR")), args)
        .output()
        .expect("run the client");
    assert!(
        output.status.success(),
        "toolstream {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Starts the script with `options` and two replicas, waits until it is ready, runs a detached
/// run on the first replica, gets and cancels it through the second, then stops the script with
/// SIGTERM and checks that every process it started (`redis_servers` of them) is gone and the
/// replicas' ports free. Returns the store the script printed.
fn two_replicas_share_a_run_and_stop_with_the_script(
    options: &[&str],
    redis_servers: usize,
) -> String {
    let port = two_free_ports();
    let mut cluster = Cluster::start(options, 2, port);
    let store = cluster.read_until("store ");
    let redis: Vec<libc::pid_t> = (0..redis_servers)
        .map(|_| pid_in(&cluster.read_until("redis-server ")))
        .collect();
    let first = cluster.read_until("replica-1 ");
    let second = cluster.read_until("replica-2 ");
    let a = format!("http://127.0.0.1:{port}");
    let b = format!("http://127.0.0.1:{}", port + 1);
    assert!(first.contains(&a), "{first}");
    assert!(second.contains(&b), "{second}");
    let replicas = [pid_in(&first), pid_in(&second)];
    cluster.read_until("cluster ready");

    // A detached run on the first replica is known to the second, and cancelled through it.
    let run_id = client(&[
        "run",
        "ticks",
        "--arg",
        "count=1000000",
        "--detach",
        "--addr",
        &a,
    ])
    .trim()
    .to_owned();
    let got: Value = serde_json::from_str(&client(&["get", &run_id, "--addr", &b])).unwrap();
    assert_eq!(got["runId"], run_id.as_str());
    assert_eq!(got["state"], "RUN_STATE_RUNNING");
    assert_eq!(got["tool"], "ticks");
    let cancelled: Value =
        serde_json::from_str(&client(&["cancel", &run_id, "--addr", &b])).unwrap();
    assert_eq!(cancelled["state"], "RUN_STATE_CANCELLED");

    // SIGTERM: the script stops the replicas and redis-server, waits for them, then exits.
    cluster.terminate();
    let status = cluster.script.wait().unwrap();
    assert!(!status.success(), "a script stopped by a signal says so");
    cluster.read_until("stopped:");
    for pid in replicas.into_iter().chain(redis) {
        assert!(
            !is_running(pid),
            "process {pid} outlived the script:\n{}",
            cluster.printed
        );
    }
    for port in [port, port + 1] {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still taken"
        );
    }
    store
}

#[test]
fn the_cluster_shares_runs_between_its_replicas_and_stops_everything_it_started() {
    let store = two_replicas_share_a_run_and_stop_with_the_script(&[], 1);
    assert!(store.contains("redis://127.0.0.1:"), "{store}");
}

#[test]
fn with_redis_over_tls_in_a_cluster_of_three_primaries_too() {
    let store =
        two_replicas_share_a_run_and_stop_with_the_script(&["--redis-tls", "--redis-cluster"], 3);
    assert!(store.contains("rediss+cluster://127.0.0.1:"), "{store}");
    assert_eq!(store.matches(',').count(), 2, "three nodes: {store}");
}
