//! No tool process outlives toolstream: the built binary, stopped with SIGTERM (or Ctrl-C), kills
//! and reaps every process it started before it exits, even processes that ignore SIGTERM and the
//! children they started (a command tool's whole process group, an MCP server's whole process
//! group). Ctrl-C in a terminal reaches toolstream, not its MCP servers: toolstream stops them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_toolstream");

/// A bound on waits that should end by themselves, so a regression fails instead of hanging.
const GENEROUS: Duration = Duration::from_secs(60);

/// A command tool that ignores SIGTERM, starts a child that ignores it too, writes
/// "<own pid> <child pid>" to the file named by its first argument, and runs until killed.
const STUBBORN_TOOL: &str = r#"trap '' TERM
sleep 1000 &
echo "$$ $!" > "$1.tmp" && mv "$1.tmp" "$1"
sleep 1000
"#;

/// `toolstream serve` with `config`, on an ephemeral port; the address it listens on.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    /// Starts the server in a process group of its own, like a shell starts a foreground job.
    fn start(config: &Path) -> Served {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--grace-period-secs",
                "1",
            ])
            .arg("--config")
            .arg(config)
            .env("TOOLSTREAM_LOG_FORMAT", "json")
            .env_remove("TOOLSTREAM_CONFIG")
            .stderr(Stdio::piped())
            .process_group(0)
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

    /// Starts `toolstream run <tool>` against the server in the background.
    fn start_run(&self, tool: &str) -> Child {
        Command::new(BIN)
            .args(["run", tool])
            .env("TOOLSTREAM_ADDR", &self.addr)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start toolstream run")
    }

    /// Kills the server with SIGKILL (it can stop nothing), reaps it, and waits (bounded) until
    /// process `pid` is gone too.
    fn kill_hard_taking(mut self, pid: i32) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        wait_until("the tool's process to die with the server", || is_gone(pid));
    }

    /// Sends SIGTERM and waits (bounded) for the server to exit.
    fn terminate(self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        self.signal_and_wait(pid, libc::SIGTERM);
    }

    /// Does what Ctrl-C in a terminal does: SIGINT to the whole foreground process group, the one
    /// the server was started in. Waits (bounded) for the server to exit.
    fn interrupt_foreground_group(self) {
        let pgid = libc::pid_t::try_from(self.child.id()).unwrap();
        self.signal_and_wait(-pgid, libc::SIGINT);
    }

    fn signal_and_wait(mut self, target: libc::pid_t, signal: libc::c_int) {
        assert!(target.abs() > 1);
        // SAFETY: kill(2) with plain integers; the target is the server (or its group).
        assert_eq!(unsafe { libc::kill(target, signal) }, 0);
        wait_until("toolstream to exit after the signal", || {
            self.child.try_wait().unwrap().is_some()
        });
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 20 ms until it holds, failing the test after a generous limit.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < GENEROUS, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids written to `file` ("<pid> <pid>"), once it exists.
fn read_pids(file: &Path) -> Vec<i32> {
    wait_until("the pids file", || file.exists());
    std::fs::read_to_string(file)
        .unwrap()
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect()
}

/// Whether process `pid` is gone: no such process, or a zombie that another process (not this
/// test) will reap. Read from /proc.
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let mut fields = after.split(' ');
            let state = fields.next().unwrap();
            let ppid: u32 = fields.next().unwrap().parse().unwrap();
            state == "Z" && ppid != std::process::id()
        }
    }
}

/// Kills whatever a failed test left behind (the processes, and the group the first one leads),
/// so it does not run on for 1000 s.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill(2) with plain integers; a pid that is gone is fine.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(&leader) = self.0.first().filter(|&&pid| pid > 1) {
            // SAFETY: as above; a negative pid names a process group.
            unsafe { libc::kill(-leader, libc::SIGKILL) };
        }
    }
}

fn write_config(dir: &Path, entries: &str) -> PathBuf {
    let config = dir.join("toolstream.toml");
    std::fs::write(&config, entries).unwrap();
    config
}

/// A config in `dir` with the stubborn command tool, which writes its pids to the returned file.
fn stubborn_command_config(dir: &Path) -> (PathBuf, PathBuf) {
    let script = dir.join("stubborn.sh");
    std::fs::write(&script, STUBBORN_TOOL).unwrap();
    let pids_file = dir.join("tool.pids");
    let config = write_config(
        dir,
        &format!(
            "[[tools]]\nkind = \"command\"\nname = \"stubborn\"\ncommand = [\"sh\", {:?}, {:?}]\n",
            script.display().to_string(),
            pids_file.display().to_string()
        ),
    );
    (config, pids_file)
}

/// A server with the stubborn command tool in `dir`, a `toolstream run` of it, and the pids the
/// tool wrote (its own and its child's); the processes are killed when the clean-up is dropped.
fn stubborn_run(dir: &Path) -> (Served, Child, Vec<i32>, KillOnDrop) {
    let (config, pids_file) = stubborn_command_config(dir);
    let served = Served::start(&config);
    let run = served.start_run("stubborn");
    let pids = read_pids(&pids_file);
    let cleanup = KillOnDrop(pids.clone());
    (served, run, pids, cleanup)
}

#[test]
fn a_command_tool_that_ignores_sigterm_does_not_outlive_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (served, mut run, pids, _cleanup) = stubborn_run(dir.path());
    assert_eq!(pids.len(), 2, "the tool and its child: {pids:?}");
    assert!(pids.iter().all(|&pid| !is_gone(pid)), "both run");

    served.terminate();
    for &pid in &pids {
        assert!(
            is_gone(pid),
            "process {pid} outlived toolstream: {:?} (pids {pids:?})",
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );
    }
    let _ = run.kill();
    let _ = run.wait();
}

/// A config in `dir` with the test MCP server in its stubborn mode: it ignores SIGTERM (a SIGINT
/// leaves a `sigint` marker), starts a child, and writes both pids to `mcp.pids`.
fn stubborn_mcp_config(dir: &Path) -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_server.py");
    write_config(
        dir,
        &format!(
            "[[tools]]\nkind = \"mcp\"\nprefix = \"py.\"\n\
             command = [\"python3\", {script:?}, {:?}, \"--stubborn\"]\n",
            dir.display().to_string()
        ),
    )
}

#[test]
fn an_mcp_server_that_ignores_sigterm_does_not_outlive_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = stubborn_mcp_config(dir.path());
    let served = Served::start(&config);
    // The server wrote its pids before it answered the handshake, so before serve listened.
    let pids = read_pids(&dir.path().join("mcp.pids"));
    let _cleanup = KillOnDrop(pids.clone());
    assert_eq!(pids.len(), 2, "the MCP server and its child: {pids:?}");
    assert!(pids.iter().all(|&pid| !is_gone(pid)), "both run");

    served.terminate();
    for &pid in &pids {
        assert!(
            is_gone(pid),
            "process {pid} outlived toolstream: {:?} (pids {pids:?})",
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );
    }
}

#[test]
fn ctrl_c_stops_toolstream_which_stops_its_mcp_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = stubborn_mcp_config(dir.path());
    let served = Served::start(&config);
    let pids = read_pids(&dir.path().join("mcp.pids"));
    let _cleanup = KillOnDrop(pids.clone());

    served.interrupt_foreground_group();
    assert!(
        !dir.path().join("sigint").exists(),
        "the MCP server got the terminal's SIGINT: it is not in a process group of its own"
    );
    for &pid in &pids {
        assert!(is_gone(pid), "process {pid} outlived toolstream");
    }
}

/// `kill -9` of the server gives it no chance to stop anything: the kernel kills the tool's
/// process (its parent-death signal). The tool's own child, in its group, is not signalled by the
/// kernel (see process_group.rs); the test's clean-up kills it.
#[test]
fn a_command_tool_dies_with_a_server_killed_with_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (served, mut run, pids, _cleanup) = stubborn_run(dir.path());
    assert!(!is_gone(pids[0]), "the tool runs");

    served.kill_hard_taking(pids[0]);
    let _ = run.kill();
    let _ = run.wait();
}

#[test]
fn an_mcp_server_dies_with_a_server_killed_with_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = stubborn_mcp_config(dir.path());
    let served = Served::start(&config);
    let pids = read_pids(&dir.path().join("mcp.pids"));
    let _cleanup = KillOnDrop(pids.clone());
    assert!(!is_gone(pids[0]), "the MCP server runs");

    served.kill_hard_taking(pids[0]);
}
