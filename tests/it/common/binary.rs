//! The built `toolstream` binary, started as a server and as a client, for tests of what an
//! operator sees: start-up errors, signals, exit codes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_toolstream");

/// `toolstream <args>` run in `cwd`, with no `TOOLSTREAM_*` variable of the test's environment.
pub fn toolstream(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(cwd).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TOOLSTREAM_") {
            command.env_remove(name);
        }
    }
    command
}

/// A `toolstream serve` that got as far as listening; killed when dropped.
pub struct Served {
    pub child: Child,
    pub addr: String,
    /// Everything the server logged, start-up included, as it arrives.
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Runs a client subcommand against this server.
    pub fn client(&self, cwd: &Path, args: &[&str]) -> std::process::Output {
        toolstream(cwd, args)
            .env("TOOLSTREAM_ADDR", &self.addr)
            .output()
            .expect("run client subcommand")
    }
}

impl Served {
    /// Stops the server (SIGTERM, then waits for it to exit) and returns all it logged.
    pub fn stop_and_log(mut self) -> String {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How `toolstream serve` came out of start-up.
pub enum Start {
    /// It is listening.
    Serving(Served),
    /// It exited before listening, with this status and stderr.
    Exited(ExitStatus, String),
}

impl Start {
    pub fn serving(self) -> Served {
        match self {
            Start::Serving(served) => served,
            Start::Exited(status, stderr) => panic!("serve exited ({status}):\n{stderr}"),
        }
    }

    pub fn exited(self) -> (ExitStatus, String) {
        match self {
            Start::Exited(status, stderr) => (status, stderr),
            Start::Serving(served) => panic!("serve started listening on {}", served.addr),
        }
    }
}

/// Starts `toolstream serve --listen 127.0.0.1:0 <args>` in `cwd` with extra environment `env`,
/// and reads its log until it listens or exits: no waiting on a clock either way.
pub fn serve(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Start {
    serve_on("127.0.0.1:0", cwd, args, env)
}

/// [`serve`] on the address `listen` (to start a server again where it was).
pub fn serve_on(listen: &str, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Start {
    let mut child = toolstream(cwd, &["serve", "--listen", listen])
        .args(args)
        .envs(env.iter().copied())
        .env("TOOLSTREAM_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start toolstream serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Ok(log) = serde_json::from_str::<Value>(&line)
            && log["fields"]["message"] == "toolstream serving"
        {
            let addr = log["fields"]["listen"].as_str().unwrap().to_owned();
            stderr.push_str(&line);
            stderr.push('\n');
            // Keep draining the log so the server never blocks on a full pipe.
            let kept = std::sync::Arc::new(std::sync::Mutex::new(stderr));
            let reader = {
                let kept = std::sync::Arc::clone(&kept);
                std::thread::spawn(move || {
                    for line in lines.map_while(Result::ok) {
                        let mut kept = kept.lock().unwrap();
                        kept.push_str(&line);
                        kept.push('\n');
                    }
                })
            };
            return Start::Serving(Served {
                child,
                addr,
                log: kept,
                reader: Some(reader),
            });
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    Start::Exited(child.wait().unwrap(), stderr)
}
