//! A real `redis-server` for a test: started on a free port with no persistence, killed when
//! dropped. Tests that need it fail with a message saying how to install it, never skip.
//! The Redis store's unit tests use this file too (`src/engine/store/redis/mod.rs` includes it by
//! path), so it depends only on crates the library and its tests both have.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long redis-server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(20);

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// How it is secured: TLS only, a password.
    secured: Secured,
    /// A node of a Redis Cluster (`--cluster-enabled yes`; see `redis_cluster.rs`): its cluster
    /// bus port (by default the port plus 10,000, which may be taken or beyond 65,535).
    cluster_bus: Option<u16>,
}

/// How a test's redis-server is secured.
#[derive(Debug, Clone, Default)]
pub struct Secured {
    /// TLS only (no plaintext port): the server's certificate and key, the CA clients must have
    /// certificates of, as files.
    pub tls: Option<ServerTlsFiles>,
    /// Clients must show a certificate of the CA (`tls-auth-clients yes`).
    pub client_certificates: bool,
    /// `requirepass`.
    pub password: Option<String>,
}

/// The files of a TLS-only redis-server.
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
}

impl RedisServer {
    /// Starts a redis-server on a port the OS chose.
    pub fn start() -> RedisServer {
        RedisServer::start_secured(Secured::default())
    }

    /// Starts a redis-server secured as `secured` says.
    pub fn start_secured(secured: Secured) -> RedisServer {
        RedisServer::start_node(secured, None)
    }

    /// Starts a redis-server with cluster mode on (not yet in a cluster).
    pub fn start_cluster_node() -> RedisServer {
        RedisServer::start_node(Secured::default(), Some(free_port()))
    }

    fn start_node(secured: Secured, cluster_bus: Option<u16>) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            secured,
            cluster_bus,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://` for a TLS server (no password in it).
    pub fn url(&self) -> String {
        let scheme = if self.secured.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.secured.tls {
            None => command.args(["--port", &port]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args([
                    "--tls-auth-clients",
                    if self.secured.client_certificates {
                        "yes"
                    } else {
                        "no"
                    },
                ]),
        };
        if let Some(password) = &self.secured.password {
            command.args(["--requirepass", password]);
        }
        if let Some(bus) = self.cluster_bus {
            // Its cluster state lives in its directory, so a restarted node rejoins.
            command
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--cluster-port", &bus.to_string()])
                .arg("--cluster-config-file")
                .arg(self.dir.path().join("nodes.conf"));
        }
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the Redis run store tests need it on PATH; \
                     install it (Debian: `apt-get install -y redis-server`; scripts/test does)"
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while !self.answers_ping() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "redis-server exited at start ({status}) on port {}",
                    self.port
                );
            }
            assert!(
                start.elapsed() < START_LIMIT,
                "redis-server did not answer PING on port {} within {START_LIMIT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the server takes connections: it answers PING (NOAUTH, with a password), or, over
    /// TLS, accepts a connection (redis-server listens once it is ready, with nothing to load).
    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.secured.tls.is_some() {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && (&reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH"))
    }

    /// A client connection, for looking at what the store wrote.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis-server")
    }
}

/// A port the OS says is free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
