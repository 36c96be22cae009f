//! Server configuration: a TOML file, overridden by `TOOLSTREAM_*` environment variables, overridden
//! by command-line flags (clap reads both of those into [`Overrides`]).
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! root = "/srv/data"
//! log_format = "json"          # or "human"
//!
//! [limits]
//! max_concurrent_runs = 16384
//! grace_period_secs = 30
//! max_message_bytes = 4194304
//!
//! [model]
//! url = "https://api.openai.com/v1"
//! api_key_file = "/run/secrets/model-key"   # or api_key_env = "OPENAI_API_KEY"
//!
//! [runs]
//! store = "redis://127.0.0.1:6379/0"        # default "memory"; see docs/replicas.md
//! key_prefix = "toolstream:"
//! lease_secs = 10
//! # Managed Redis: store = "rediss://default@redis.example.com:6380/0" (TLS), then
//! # redis_ca = "redis-ca.pem"                # instead of the system roots (optional)
//! # redis_cert = "redis-client.pem"          # a client certificate, when Redis asks (optional)
//! # redis_key = "redis-client.key"
//! # redis_password_env = "REDIS_PASSWORD"    # the password, from the environment
//! # Redis Cluster: store = "rediss+cluster://default@node1:6380,node2:6380" (or any node's URL
//! # redis_cluster = true                      # with this)
//!
//! [http]
//! cors_origins = ["https://app.example.com"]   # none by default: same origin only
//! keep_alive_secs = 15                          # SSE comment lines and WebSocket pings
//! ws_max_runs = 64                              # runs and watches in flight per WebSocket
//! first_byte_timeout_ms = 10000   # a new connection that sends nothing for this long is closed
//! body_timeout_ms = 30000         # a JSON request body that stalls this long between chunks: 408
//! max_connections = 10000         # open connections at once; beyond, new ones are closed at once
//!
//! [mcp]
//! enabled = true                  # MCP Streamable HTTP at /mcp (docs/mcp-server.md); false: 404
//! progress_interval_ms = 100      # at most one notifications/progress per call per interval
//! allowed_hosts = []              # Host names /mcp answers (DNS rebinding); empty: any
//! sessions = true                 # MCP sessions (Mcp-Session-Id) for pre-2026 clients
//!
//! [server]
//! tls_cert = "tls/server.pem"     # TLS on the one port (reloaded when the files change)
//! tls_key = "tls/server.key"
//! tls_client_ca = "tls/ca.pem"    # mTLS: clients need a certificate this CA signed
//!
//! [auth]
//! max_runs_per_principal = 100
//! principal_from_client_cert = false   # with mTLS: a client certificate's subject CN
//!
//! [[auth.tokens]]
//! name = "ci"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! tools = ["checksum", "ticks"]       # absent or ["*"]: every tool
//!
//! [[auth.tokens]]
//! name = "dashboard"
//! token_env = "DASHBOARD_TOKEN"       # the token itself, from the environment
//! ```
//!
//! Relative paths in the file (`root`, `[model] api_key_file`, a command's `cwd`…) are relative to
//! the file's directory; relative paths given as flags or environment variables are relative to
//! the working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{AuthConfig, Principal, TokenEntry, ToolScope, token_digest};
pub use crate::engine::{DEFAULT_KEY_PREFIX, DEFAULT_LEASE, Limits, RedisClientCert, StoreConfig};
use crate::tls::TlsFiles;

/// Default address: loopback only, so a fresh install exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsFile {
    retention_secs: Option<u64>,
    max_runs: Option<usize>,
    max_events_per_run: Option<usize>,
    max_live_calls_per_run: Option<usize>,
    store: Option<String>,
    key_prefix: Option<String>,
    lease_secs: Option<u64>,
    replica_name: Option<String>,
    redis_ca: Option<PathBuf>,
    redis_cert: Option<PathBuf>,
    redis_key: Option<PathBuf>,
    redis_password_env: Option<String>,
    redis_cluster: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    cors_origins: Option<Vec<String>>,
    keep_alive_secs: Option<u64>,
    ws_max_runs: Option<usize>,
    first_byte_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct McpFile {
    enabled: Option<bool>,
    progress_interval_ms: Option<u64>,
    allowed_hosts: Option<Vec<String>>,
    sessions: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    tokens: Vec<TokenFile>,
    max_runs_per_principal: Option<usize>,
    #[serde(default)]
    principal_from_client_cert: bool,
    client_cert_tools: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    name: String,
    /// Hex SHA-256 of the token.
    sha256: Option<String>,
    /// The environment variable holding the token.
    token_env: Option<String>,
    tools: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    root: Option<PathBuf>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    model: ModelFile,
    #[serde(default)]
    runs: RunsFile,
    #[serde(default)]
    http: HttpFile,
    #[serde(default)]
    mcp: McpFile,
    #[serde(default)]
    server: ServerFile,
    #[serde(default)]
    auth: AuthFile,
    /// `[[tools]]` entries, checked by the tool sources that read them.
    #[serde(default)]
    tools: Vec<toml::Table>,
    /// `[[webhooks]]` entries, checked by `crate::webhooks` as the server starts.
    #[serde(default)]
    webhooks: Vec<WebhookEntry>,
    #[serde(default)]
    webhook_delivery: WebhookDelivery,
}

/// One `[[webhooks]]` entry: where to POST which run events (see `docs/configuration.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEntry {
    /// The receiver's URL (`http` or `https`).
    pub url: String,
    /// The environment variable holding the signing secret (`whsec_` and base64).
    pub secret_env: String,
    /// Which events: `run.succeeded`, `run.failed`, `run.cancelled`, `run.input_required`.
    pub events: Vec<String>,
    /// Only runs of these tools (`<agent>` for agent runs); absent: every run.
    pub tools: Option<Vec<String>>,
}

/// `[webhook_delivery]`: how hard deliveries are tried. Absent settings take the defaults that
/// `crate::webhooks` states.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDelivery {
    /// How long a delivery is retried from its first attempt.
    pub retry_for_secs: Option<u64>,
    /// The first retry's delay (doubled each retry, with jitter).
    pub first_retry_ms: Option<u64>,
    /// The longest delay between retries.
    pub max_retry_ms: Option<u64>,
    /// How long one attempt may take.
    pub attempt_timeout_ms: Option<u64>,
    /// Deliveries waiting to be handed to the senders at most; beyond, new ones are dropped.
    pub queue: Option<usize>,
    /// With Redis: a delivery not touched by its replica for this long is taken by another.
    pub claim_after_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_concurrent_runs: Option<usize>,
    event_buffer: Option<usize>,
    grace_period_secs: Option<u64>,
    max_message_bytes: Option<usize>,
    max_concurrent_streams: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    url: Option<String>,
    name: Option<String>,
    max_steps: Option<u32>,
    max_parallel_calls: Option<usize>,
    #[serde(default)]
    approval_required: Vec<String>,
    /// The name of the environment variable holding the API key (the key itself never goes in
    /// the file).
    api_key_env: Option<String>,
    /// A file holding the API key, relative to the config file's directory.
    api_key_file: Option<PathBuf>,
}

/// The language model behind RunAgent.
#[derive(Clone, Default)]
pub struct ModelConfig {
    /// Base URL of an OpenAI-compatible API, ending in `/v1`; `None` disables RunAgent.
    pub url: Option<String>,
    /// The model used when a request names none.
    pub name: Option<String>,
    /// Sent as a bearer token; never logged.
    pub api_key: Option<String>,
    /// Step limit used when a request sets none.
    pub max_steps: Option<u32>,
    /// Tool calls of one agent run in flight at once; `None` for the default (8).
    pub max_parallel_calls: Option<usize>,
    /// Tools whose calls in agent runs wait for a person's approval (`"*"`: every tool).
    pub approval_required: Vec<String>,
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelConfig")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("max_steps", &self.max_steps)
            .field("max_parallel_calls", &self.max_parallel_calls)
            .field("approval_required", &self.approval_required)
            .finish()
    }
}

/// The HTTP side of the listener: browsers, SSE and WebSocket clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Origins a browser may call from besides the server's own (CORS), like
    /// `https://app.example.com`; `"*"` allows any. None by default.
    pub cors_origins: Vec<String>,
    /// How often an idle SSE stream gets a comment line and a WebSocket a ping, so proxies with
    /// idle timeouts keep them open.
    pub keep_alive: Duration,
    /// Runs and watches in flight on one WebSocket; more are refused with RESOURCE_EXHAUSTED.
    pub ws_max_runs: usize,
    /// How long a new connection may stay silent before it is closed (after the TLS handshake,
    /// with TLS). Applies to every connection, gRPC included, until its first byte only.
    pub first_byte_timeout: Duration,
    /// How long the body of a JSON request (`POST /v1/tools/{name}/runs`, `/v1/agent/runs`) may
    /// stall between two chunks before the request is answered 408 and its connection closed.
    /// Never applies to streams (SSE, WebSocket, gRPC).
    pub body_timeout: Duration,
    /// Connections open at once (WebSocket sessions included); beyond it new connections are
    /// accepted and closed at once.
    pub max_connections: usize,
    /// `[mcp]`: the registry as an MCP server at `/mcp`.
    pub mcp: McpConfig,
}

/// `[mcp]`: the registry served to MCP clients at `/mcp` (docs/mcp-server.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    /// Whether `/mcp` is served (default true); off, it answers 404 like any unknown path.
    pub enabled: bool,
    /// At most one `notifications/progress` per call per this interval (progress in between
    /// is coalesced to the newest, as for a slow gRPC reader).
    pub progress_interval: Duration,
    /// The `Host` names (`name` or `name:port`) `/mcp` answers, against DNS rebinding; empty
    /// (the default): any, as every other route.
    pub allowed_hosts: Vec<String>,
    /// Whether clients of the revisions before 2026-07-28 get a session (`Mcp-Session-Id`),
    /// which `notifications/cancelled` needs to reach its call. Sessions live in one replica's
    /// memory: several replicas need sticky routing, or `false`.
    pub sessions: bool,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            enabled: true,
            progress_interval: Duration::from_millis(100),
            allowed_hosts: Vec::new(),
            sessions: true,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            cors_origins: Vec::new(),
            keep_alive: Duration::from_secs(15),
            ws_max_runs: 64,
            first_byte_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            mcp: McpConfig::default(),
        }
    }
}

/// What the command line and the environment set over the config file: `toolstream serve`'s
/// flags, each also a `TOOLSTREAM_*` variable (clap reads both; a flag wins over its variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "TOOLSTREAM_LISTEN")]
    pub listen: Option<String>,
    /// Directory file tools are confined to [default: the working directory].
    #[arg(long, env = "TOOLSTREAM_ROOT")]
    pub root: Option<PathBuf>,
    /// Most runs in progress at once; more get RESOURCE_EXHAUSTED [default: 16384].
    #[arg(
        long = "max-runs",
        env = "TOOLSTREAM_MAX_RUNS",
        value_name = "MAX_RUNS"
    )]
    pub max_concurrent_runs: Option<usize>,
    /// Seconds runs in progress may take to finish after SIGTERM [default: 30].
    #[arg(long, env = "TOOLSTREAM_GRACE_PERIOD_SECS")]
    pub grace_period_secs: Option<u64>,
    /// Largest gRPC message accepted or sent, in bytes [default: 4194304].
    #[arg(long, env = "TOOLSTREAM_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Base URL of an OpenAI-compatible model API for RunAgent, ending in /v1
    /// (OpenAI, vLLM, Ollama, llama.cpp's server, LM Studio).
    #[arg(long, env = "TOOLSTREAM_MODEL_URL")]
    pub model_url: Option<String>,
    /// Model used when a RunAgent request names none.
    #[arg(long, env = "TOOLSTREAM_MODEL")]
    pub model: Option<String>,
    /// API key sent to the model endpoint as a bearer token. Given as this flag, the key is
    /// visible to every user of the machine in `ps`: prefer --api-key-file or the
    /// TOOLSTREAM_API_KEY environment variable.
    #[arg(long, env = "TOOLSTREAM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File holding the model API key (surrounding whitespace is ignored).
    #[arg(long, env = "TOOLSTREAM_API_KEY_FILE", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Most model turns of an agent run when the request sets none [default: 8].
    #[arg(long, env = "TOOLSTREAM_MAX_STEPS")]
    pub max_steps: Option<u32>,
    /// Log format [default: human].
    #[arg(long, env = "TOOLSTREAM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve TLS with this PEM certificate chain (with --tls-key); reloaded when the file
    /// changes.
    #[arg(long, env = "TOOLSTREAM_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "TOOLSTREAM_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients need a certificate signed by a CA of this PEM file.
    #[arg(long, env = "TOOLSTREAM_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Where runs are kept: "memory", or a Redis shared by several replicas
    /// (redis://host:port/db) [default: memory].
    #[arg(
        long,
        env = "TOOLSTREAM_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
}

// The store's settings are the engine's (`engine::StoreConfig`); checking what the file, the
// environment and the flags gave is configuration's.
impl StoreConfig {
    fn check(&self) -> Result<(), ConfigError> {
        const SCHEMES: [&str; 6] = [
            "redis://",
            "rediss://",
            "redis+unix://",
            "unix://",
            "redis+cluster://",
            "rediss+cluster://",
        ];
        if !self.is_memory() && !SCHEMES.iter().any(|scheme| self.url.starts_with(scheme)) {
            return Err(ConfigError::Invalid {
                key: "runs.store",
                message: format!(
                    "{:?} is neither \"memory\" nor a Redis URL like redis://127.0.0.1:6379/0 \
                     or rediss://host:6380/0 (set by --store, TOOLSTREAM_STORE or [runs] store)",
                    self.redacted_url()
                ),
            });
        }
        if self.is_cluster() {
            let unix = self.url.starts_with("redis+unix://") || self.url.starts_with("unix://");
            if self.is_memory() || unix || self.cluster_nodes().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "runs.redis_cluster",
                    message: format!(
                        "a Redis Cluster is reached over TCP: give its nodes as \
                         redis+cluster://host:port,host:port (or rediss+cluster://), not {:?}",
                        self.redacted_url()
                    ),
                });
            }
            // A run's keys carry its id as their hash tag; braces in the prefix would be the tag
            // instead, and put every key of the fleet in one slot.
            if self.key_prefix.contains(['{', '}']) {
                return Err(ConfigError::Invalid {
                    key: "runs.key_prefix",
                    message: "must not contain { or } with Redis Cluster (keys are hash-tagged \
                              by run, replica and principal)"
                        .into(),
                });
            }
        }
        if !self.is_tls() && (self.ca_pem.is_some() || self.client_cert.is_some()) {
            return Err(ConfigError::Invalid {
                key: "runs.redis_ca",
                message: format!(
                    "redis_ca, redis_cert and redis_key are for TLS, but the store {:?} is not a \
                     rediss:// URL",
                    self.redacted_url()
                ),
            });
        }
        if self.is_memory() && self.password.is_some() {
            return Err(ConfigError::Invalid {
                key: "runs.redis_password_env",
                message: "is set, but the run store is \"memory\"".into(),
            });
        }
        if self.lease.is_zero() {
            return Err(ConfigError::Invalid {
                key: "runs.lease_secs",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory file tools are confined to.
    pub root: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Limits.
    pub limits: Limits,
    /// The model behind RunAgent.
    pub model: ModelConfig,
    /// The HTTP side: CORS, keep-alives, WebSocket bounds.
    pub http: HttpConfig,
    /// TLS on the listener (`[server] tls_*`, `--tls-*`); `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// Who may call and what they may do (`[auth]`); off unless it names tokens.
    pub auth: AuthConfig,
    /// `[[tools]]` entries of the config file, in order.
    pub tools: Vec<toml::Table>,
    /// Where runs are kept.
    pub store: StoreConfig,
    /// `[[webhooks]]` entries, as written.
    pub webhooks: Vec<WebhookEntry>,
    /// `[webhook_delivery]`, as written.
    pub webhook_delivery: WebhookDelivery,
    /// The config file, when one was given (relative paths in it are relative to its directory).
    pub path: Option<PathBuf>,
}

impl Config {
    /// Reads `path` (when given) and applies `overrides` on top.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(path, &text)?
            }
            None => ConfigFile::default(),
        };
        let base_dir = path.and_then(Path::parent);
        let defaults = Limits::default();
        let listen_text = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::Invalid {
                key: "listen",
                message: format!("{listen_text:?} is not an address like 127.0.0.1:50051 ({e})"),
            })?;
        // A flag's root is relative to the working directory, the file's to the file.
        let root = match overrides
            .root
            .or_else(|| file.root.map(|root| relative_to(base_dir, root)))
        {
            Some(root) => root,
            None => std::env::current_dir().map_err(|e| ConfigError::Invalid {
                key: "root",
                message: format!("no root given and the working directory is unknown: {e}"),
            })?,
        };
        let limits = Limits {
            max_concurrent_runs: overrides
                .max_concurrent_runs
                .or(file.limits.max_concurrent_runs)
                .unwrap_or(defaults.max_concurrent_runs),
            event_buffer: file.limits.event_buffer.unwrap_or(defaults.event_buffer),
            grace_period: overrides
                .grace_period_secs
                .or(file.limits.grace_period_secs)
                .map_or(defaults.grace_period, Duration::from_secs),
            max_message_bytes: overrides
                .max_message_bytes
                .or(file.limits.max_message_bytes)
                .unwrap_or(defaults.max_message_bytes),
            max_concurrent_streams: file
                .limits
                .max_concurrent_streams
                .unwrap_or(defaults.max_concurrent_streams),
            retention: file
                .runs
                .retention_secs
                .map_or(defaults.retention, Duration::from_secs),
            max_runs: file.runs.max_runs.unwrap_or(defaults.max_runs),
            max_events_per_run: file
                .runs
                .max_events_per_run
                .unwrap_or(defaults.max_events_per_run),
            max_live_calls_per_run: file
                .runs
                .max_live_calls_per_run
                .unwrap_or(defaults.max_live_calls_per_run),
            max_runs_per_owner: file.auth.max_runs_per_principal,
        };
        if limits.max_runs_per_owner == Some(0) {
            return Err(ConfigError::Invalid {
                key: "auth.max_runs_per_principal",
                message: "must be at least 1 (leave it out for no per-principal limit)".into(),
            });
        }
        let store = StoreConfig {
            url: overrides
                .store
                .or(file.runs.store)
                .unwrap_or_else(|| StoreConfig::default().url),
            cluster: file.runs.redis_cluster.unwrap_or(false),
            key_prefix: file
                .runs
                .key_prefix
                .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned()),
            lease: file
                .runs
                .lease_secs
                .map_or(DEFAULT_LEASE, Duration::from_secs),
            replica_name: file.runs.replica_name,
            ca_pem: read_pem(
                "runs.redis_ca",
                file.runs.redis_ca.map(|p| relative_to(base_dir, p)),
            )?,
            client_cert: match (file.runs.redis_cert, file.runs.redis_key) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some(RedisClientCert {
                    cert_pem: read_pem("runs.redis_cert", Some(relative_to(base_dir, cert)))?
                        .unwrap_or_default(),
                    key_pem: read_pem("runs.redis_key", Some(relative_to(base_dir, key)))?
                        .unwrap_or_default(),
                }),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "runs.redis_cert",
                        message: "redis_cert and redis_key go together; give both or neither"
                            .into(),
                    });
                }
            },
            password: match file.runs.redis_password_env {
                None => None,
                Some(variable) => match std::env::var(&variable) {
                    Ok(password) if !password.is_empty() => Some(password),
                    _ => {
                        return Err(ConfigError::Invalid {
                            key: "runs.redis_password_env",
                            message: format!(
                                "names {variable:?}, which is not set or empty in the \
                                 environment"
                            ),
                        });
                    }
                },
            },
        };
        store.check()?;
        if limits.max_events_per_run < 2 {
            return Err(ConfigError::Invalid {
                key: "runs.max_events_per_run",
                message: "must be at least 2 (the started event and the last one)".into(),
            });
        }
        if limits.max_live_calls_per_run == 0 {
            return Err(ConfigError::Invalid {
                key: "runs.max_live_calls_per_run",
                message: "must be at least 1".into(),
            });
        }
        // The engine counts runs with a tokio semaphore, which holds at most MAX_PERMITS.
        if !(1..=MAX_CONCURRENT_RUNS).contains(&limits.max_concurrent_runs) {
            return Err(ConfigError::Invalid {
                key: "limits.max_concurrent_runs",
                message: format!(
                    "must be between 1 and {MAX_CONCURRENT_RUNS}, not {} (set by --max-runs, \
                     TOOLSTREAM_MAX_RUNS or [limits] max_concurrent_runs)",
                    limits.max_concurrent_runs
                ),
            });
        }
        // No stream at all would mean no call is ever served: the server would seem to hang.
        if limits.max_concurrent_streams == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.max_concurrent_streams",
                message: format!("must be between 1 and {}, not 0", u32::MAX),
            });
        }
        if limits.event_buffer == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.event_buffer",
                message: "must be at least 1".into(),
            });
        }
        if limits.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "limits.max_message_bytes",
                message: "must be at least 1024".into(),
            });
        }
        let api_key = match (overrides.api_key, overrides.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "api_key",
                    message: "--api-key (TOOLSTREAM_API_KEY) and --api-key-file \
                              (TOOLSTREAM_API_KEY_FILE) are both set; give one"
                        .into(),
                });
            }
            (Some(key), None) => Some(key),
            (None, Some(path)) => Some(read_api_key("--api-key-file", &path)?),
            (None, None) => match (file.model.api_key_file, file.model.api_key_env) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::Invalid {
                        key: "model.api_key_file",
                        message: "and model.api_key_env are both set; give one".into(),
                    });
                }
                (Some(path), None) => Some(read_api_key(
                    "model.api_key_file",
                    &relative_to(base_dir, path),
                )?),
                (None, Some(name)) => std::env::var(name).ok(),
                (None, None) => None,
            },
        };
        let model = ModelConfig {
            url: overrides.model_url.or(file.model.url),
            name: overrides.model.or(file.model.name),
            api_key: api_key.filter(|key| !key.is_empty()),
            max_steps: overrides.max_steps.or(file.model.max_steps),
            max_parallel_calls: file.model.max_parallel_calls,
            approval_required: file.model.approval_required,
        };
        if model.max_steps == Some(0) {
            return Err(ConfigError::Invalid {
                key: "model.max_steps",
                message: "must be at least 1".into(),
            });
        }
        if model.max_parallel_calls == Some(0) {
            return Err(ConfigError::Invalid {
                key: "model.max_parallel_calls",
                message: "must be at least 1".into(),
            });
        }
        let mut http = http_config(file.http)?;
        http.mcp = mcp_config(file.mcp)?;
        let from_file = |path: Option<PathBuf>| path.map(|path| relative_to(base_dir, path));
        let tls = tls_files(
            overrides
                .tls_cert
                .or_else(|| from_file(file.server.tls_cert)),
            overrides.tls_key.or_else(|| from_file(file.server.tls_key)),
            overrides
                .tls_client_ca
                .or_else(|| from_file(file.server.tls_client_ca)),
        )?;
        let auth = auth_config(file.auth, tls.as_ref())?;
        Ok(Config {
            listen,
            root,
            log_format: overrides.log_format.or(file.log_format).unwrap_or_default(),
            limits,
            model,
            http,
            tls,
            auth,
            tools: file.tools,
            store,
            webhooks: file.webhooks,
            webhook_delivery: file.webhook_delivery,
            path: path.map(Path::to_owned),
        })
    }

    fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The directory relative paths in the config file are relative to: the file's directory,
    /// or `.` when there is no file.
    pub fn base_dir(&self) -> PathBuf {
        relative_to(
            self.path.as_deref().and_then(Path::parent),
            PathBuf::from("."),
        )
    }
}

/// `[mcp]` checked: the interval is positive, host names are not empty.
fn mcp_config(file: McpFile) -> Result<McpConfig, ConfigError> {
    let defaults = McpConfig::default();
    let progress_interval = match file.progress_interval_ms {
        Some(0) => {
            return Err(ConfigError::Invalid {
                key: "mcp.progress_interval_ms",
                message: "must be at least 1".into(),
            });
        }
        Some(ms) => Duration::from_millis(ms),
        None => defaults.progress_interval,
    };
    let allowed_hosts = file.allowed_hosts.unwrap_or_default();
    if let Some(bad) = allowed_hosts
        .iter()
        .find(|host| host.trim().is_empty() || host.contains('/'))
    {
        return Err(ConfigError::Invalid {
            key: "mcp.allowed_hosts",
            message: format!(
                "{bad:?} is not a host name like \"tools.example.com\" or \"tools.example.com:8443\""
            ),
        });
    }
    Ok(McpConfig {
        enabled: file.enabled.unwrap_or(defaults.enabled),
        progress_interval,
        allowed_hosts,
        sessions: file.sessions.unwrap_or(defaults.sessions),
    })
}

/// `[http]` checked: every origin is `*` or `scheme://host[:port]`, the numbers are positive.
fn http_config(file: HttpFile) -> Result<HttpConfig, ConfigError> {
    let defaults = HttpConfig::default();
    let cors_origins = file.cors_origins.unwrap_or_default();
    for origin in &cors_origins {
        let looks_like_origin = origin == "*"
            || origin.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && !rest.is_empty()
                    && !rest.contains('/')
                    && origin.chars().all(|c| c.is_ascii_graphic())
            });
        if !looks_like_origin {
            return Err(ConfigError::Invalid {
                key: "http.cors_origins",
                message: format!(
                    "{origin:?} is not an origin like \"https://app.example.com\" \
                     (scheme, host and optional port, no path) or \"*\""
                ),
            });
        }
    }
    let keep_alive = match file.keep_alive_secs {
        Some(0) => {
            return Err(ConfigError::Invalid {
                key: "http.keep_alive_secs",
                message: "must be at least 1".into(),
            });
        }
        Some(secs) => Duration::from_secs(secs),
        None => defaults.keep_alive,
    };
    let ws_max_runs = match file.ws_max_runs {
        Some(0) => {
            return Err(ConfigError::Invalid {
                key: "http.ws_max_runs",
                message: "must be at least 1".into(),
            });
        }
        Some(n) => n,
        None => defaults.ws_max_runs,
    };
    let millis = |key: &'static str, value: Option<u64>, default: Duration| match value {
        Some(0) => Err(ConfigError::Invalid {
            key,
            message: "must be at least 1".into(),
        }),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Ok(default),
    };
    let first_byte_timeout = millis(
        "http.first_byte_timeout_ms",
        file.first_byte_timeout_ms,
        defaults.first_byte_timeout,
    )?;
    let body_timeout = millis(
        "http.body_timeout_ms",
        file.body_timeout_ms,
        defaults.body_timeout,
    )?;
    let max_connections = match file.max_connections {
        Some(0) => {
            return Err(ConfigError::Invalid {
                key: "http.max_connections",
                message: "must be at least 1".into(),
            });
        }
        Some(n) => n,
        None => defaults.max_connections,
    };
    Ok(HttpConfig {
        cors_origins,
        keep_alive,
        ws_max_runs,
        first_byte_timeout,
        body_timeout,
        max_connections,
        mcp: McpConfig::default(),
    })
}

/// The TLS files, checked for completeness: a certificate needs its key, a client CA needs both.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca,
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        (None, None) => Err(ConfigError::Invalid {
            key: "server.tls_client_ca",
            message: "client certificates need TLS: set tls_cert and tls_key too (--tls-cert, \
                      --tls-key)"
                .into(),
        }),
        (Some(_), None) => Err(ConfigError::Invalid {
            key: "server.tls_key",
            message: "tls_cert is set but tls_key is not: give the certificate's private key \
                      (--tls-key or [server] tls_key)"
                .into(),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            key: "server.tls_cert",
            message: "tls_key is set but tls_cert is not: give the certificate (--tls-cert or \
                      [server] tls_cert)"
                .into(),
        }),
    }
}

/// `[auth]` checked, each token's digest read or computed (a `token_env` variable is read here,
/// once, and only its digest kept).
fn auth_config(file: AuthFile, tls: Option<&TlsFiles>) -> Result<AuthConfig, ConfigError> {
    let mut tokens = Vec::with_capacity(file.tokens.len());
    for entry in file.tokens {
        if entry.name.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "auth.tokens",
                message: "an entry has an empty `name`; the name is the principal runs belong to"
                    .into(),
            });
        }
        let name = entry.name;
        let sha256 = match (entry.sha256, entry.token_env) {
            (Some(hex), None) => parse_digest(&hex).ok_or_else(|| ConfigError::Invalid {
                key: "auth.tokens",
                message: format!(
                    "entry {name:?}: sha256 must be 64 hex digits (the output of \
                     `printf %s TOKEN | sha256sum`)"
                ),
            })?,
            (None, Some(variable)) => match std::env::var(&variable) {
                Ok(token) if !token.is_empty() => token_digest(&token),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "auth.tokens",
                        message: format!(
                            "entry {name:?}: token_env names {variable:?}, which is not set or \
                             empty"
                        ),
                    });
                }
            },
            _ => {
                return Err(ConfigError::Invalid {
                    key: "auth.tokens",
                    message: format!(
                        "entry {name:?} needs exactly one of sha256 (the token's hex SHA-256) \
                         and token_env (the environment variable holding it); a token itself \
                         never goes in the file"
                    ),
                });
            }
        };
        tokens.push(TokenEntry {
            sha256,
            principal: std::sync::Arc::new(Principal {
                name: std::sync::Arc::from(name),
                tools: ToolScope::from_list(entry.tools),
            }),
        });
    }
    if file.principal_from_client_cert && tls.is_none_or(|tls| tls.client_ca.is_none()) {
        return Err(ConfigError::Invalid {
            key: "auth.principal_from_client_cert",
            message: "needs client certificates: set [server] tls_client_ca (--tls-client-ca) \
                      with tls_cert and tls_key"
                .into(),
        });
    }
    Ok(AuthConfig {
        tokens,
        principal_from_client_cert: file.principal_from_client_cert,
        client_cert_tools: file
            .client_cert_tools
            .map(|tools| ToolScope::from_list(Some(tools))),
    })
}

/// 64 hex digits as 32 bytes.
fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

/// The most runs the engine can count (tokio's `Semaphore::MAX_PERMITS`).
const MAX_CONCURRENT_RUNS: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// `path` as written in a config file in directory `base_dir` (`None`: no file; empty: the
/// working directory).
/// The contents of the PEM file at `path` (setting `key`), when one is given.
fn read_pem(key: &'static str, path: Option<PathBuf>) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = path else {
        return Ok(None);
    };
    std::fs::read(&path)
        .map(Some)
        .map_err(|e| ConfigError::Invalid {
            key,
            message: format!("cannot read {}: {e}", path.display()),
        })
}

fn relative_to(base_dir: Option<&Path>, path: PathBuf) -> PathBuf {
    match base_dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path,
    }
}

/// Reads the API key from the file at `path` (the setting `key` named it); surrounding whitespace,
/// such as the final newline, is not part of the key.
fn read_api_key(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        key,
        message: format!("cannot read the API key file {}: {e}", path.display()),
    })?;
    let api_key = text.trim();
    if api_key.is_empty() {
        return Err(ConfigError::Invalid {
            key,
            message: format!("the API key file {} is empty", path.display()),
        });
    }
    Ok(api_key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\n[limits]\nmax_concurrent_runs = 5\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.limits.max_concurrent_runs, 5);

        let overrides = Overrides {
            listen: Some("127.0.0.1:7001".into()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&path), overrides).unwrap();
        assert_eq!(config.listen.port(), 7001);
    }

    #[test]
    fn a_relative_root_is_relative_to_the_file_unless_it_is_a_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        std::fs::write(&path, "root = \"data\"\n").unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(config.root, dir.path().join("data"));

        let overrides = Overrides {
            root: Some("flagged".into()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&path), overrides).unwrap();
        assert_eq!(config.root, Path::new("flagged"));
    }

    #[test]
    fn an_api_key_file_is_read_and_trimmed_and_its_errors_name_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "  secret\n").unwrap();
        let path = dir.path().join("toolstream.toml");
        std::fs::write(&path, "[model]\napi_key_file = \"key\"\n").unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(config.model.api_key.as_deref(), Some("secret"));

        std::fs::write(dir.path().join("key"), "\n").unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("model.api_key_file") && message.contains("empty"));

        let overrides = Overrides {
            api_key: Some("k".into()),
            api_key_file: Some(dir.path().join("key")),
            ..Overrides::default()
        };
        let message = Config::load(None, overrides).unwrap_err().to_string();
        assert!(message.contains("--api-key-file"), "{message}");
    }

    #[test]
    fn the_run_store_comes_from_the_flag_or_the_file_and_hides_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        std::fs::write(
            &path,
            "[runs]\nstore = \"redis://:secret@10.0.0.1:6379/2\"\nkey_prefix = \"ts:\"\n\
             lease_secs = 3\nreplica_name = \"web\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(config.store.key_prefix, "ts:");
        assert_eq!(config.store.lease, Duration::from_secs(3));
        assert_eq!(config.store.replica_name.as_deref(), Some("web"));
        assert_eq!(config.store.redacted_url(), "redis://:***@10.0.0.1:6379/2");
        assert!(!format!("{:?}", config.store).contains("secret"));

        let overrides = Overrides {
            store: Some("memory".into()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&path), overrides).unwrap();
        assert!(config.store.is_memory());
        assert_eq!(
            Config::load(None, Overrides::default()).unwrap().store.url,
            "memory"
        );

        let overrides = Overrides {
            store: Some("postgres://db".into()),
            ..Overrides::default()
        };
        let message = Config::load(None, overrides).unwrap_err().to_string();
        assert!(message.contains("runs.store"), "{message}");
    }

    #[test]
    fn a_redis_cluster_is_a_cluster_url_or_a_node_s_url_with_redis_cluster_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        let load = |runs: &str| {
            std::fs::write(&path, format!("[runs]\n{runs}")).unwrap();
            Config::load(Some(&path), Overrides::default())
        };
        let config = load("store = \"rediss+cluster://u:pw@n1:6379,n2:6380\"\n").unwrap();
        assert!(config.store.is_cluster() && config.store.is_tls());
        assert_eq!(
            config.store.cluster_nodes(),
            ["rediss://u:pw@n1:6379", "rediss://u:pw@n2:6380"]
        );
        assert_eq!(
            config.store.redacted_url(),
            "rediss+cluster://u:***@n1:6379,n2:6380"
        );
        let config = load("store = \"redis://n1:6379\"\nredis_cluster = true\n").unwrap();
        assert!(config.store.is_cluster() && !config.store.is_tls());
        assert_eq!(config.store.cluster_nodes(), ["redis://n1:6379"]);
        assert!(
            !load("store = \"redis://n1:6379\"\n")
                .unwrap()
                .store
                .is_cluster()
        );

        for (runs, key) in [
            // A cluster is reached over TCP.
            (
                "store = \"redis+unix:///run/redis.sock\"\nredis_cluster = true\n",
                "runs.redis_cluster",
            ),
            ("store = \"redis+cluster://\"\n", "runs.redis_cluster"),
            // Braces in the prefix would be every key's hash tag.
            (
                "store = \"redis+cluster://n1:6379\"\nkey_prefix = \"{ts}:\"\n",
                "runs.key_prefix",
            ),
        ] {
            let message = load(runs).unwrap_err().to_string();
            assert!(message.contains(key), "{runs}: {message}");
        }
    }

    #[test]
    fn redis_tls_files_are_read_beside_the_file_and_the_password_comes_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "CA PEM").unwrap();
        std::fs::write(dir.path().join("c.pem"), "CERT PEM").unwrap();
        std::fs::write(dir.path().join("c.key"), "KEY PEM").unwrap();
        let path = dir.path().join("toolstream.toml");
        let load = |runs: &str| {
            std::fs::write(&path, format!("[runs]\n{runs}")).unwrap();
            Config::load(Some(&path), Overrides::default())
        };
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("TOOLSTREAM_CONFIG_TEST_REDIS_PW", "pw-in-env") };
        let config = load(
            "store = \"rediss://default@cache.example:6380/0\"\nredis_ca = \"ca.pem\"\n\
             redis_cert = \"c.pem\"\nredis_key = \"c.key\"\n\
             redis_password_env = \"TOOLSTREAM_CONFIG_TEST_REDIS_PW\"\n",
        )
        .unwrap();
        assert!(config.store.is_tls());
        assert_eq!(config.store.ca_pem.as_deref(), Some(&b"CA PEM"[..]));
        let client = config.store.client_cert.as_ref().unwrap();
        assert_eq!(
            (&client.cert_pem[..], &client.key_pem[..]),
            (&b"CERT PEM"[..], &b"KEY PEM"[..])
        );
        assert_eq!(config.store.password.as_deref(), Some("pw-in-env"));
        assert!(!format!("{:?}", config.store).contains("pw-in-env"));

        for (runs, key) in [
            // TLS files with a plaintext URL.
            (
                "store = \"redis://h:6379/0\"\nredis_ca = \"ca.pem\"\n",
                "runs.redis_ca",
            ),
            // A certificate without its key.
            (
                "store = \"rediss://h:6380/0\"\nredis_cert = \"c.pem\"\n",
                "runs.redis_cert",
            ),
            // A file that is not there.
            (
                "store = \"rediss://h:6380/0\"\nredis_ca = \"missing.pem\"\n",
                "runs.redis_ca",
            ),
            // A variable that is not set.
            (
                "store = \"rediss://h:6380/0\"\nredis_password_env = \"TOOLSTREAM_UNSET_FOR_TEST\"\n",
                "runs.redis_password_env",
            ),
        ] {
            let message = load(runs).unwrap_err().to_string();
            assert!(message.contains(key), "{runs}: {message}");
        }
    }

    #[test]
    fn unknown_keys_are_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), Overrides::default()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("bad.toml") && message.contains("listn"),
            "{message}"
        );
    }

    #[test]
    fn mcp_settings_are_read_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        let config = Config::load(None, Overrides::default()).unwrap();
        assert!(config.http.mcp.enabled && config.http.mcp.sessions);
        std::fs::write(
            &path,
            "[mcp]\nenabled = false\nprogress_interval_ms = 250\n\
             allowed_hosts = [\"tools.example.com\"]\nsessions = false\n",
        )
        .unwrap();
        let mcp = Config::load(Some(&path), Overrides::default())
            .unwrap()
            .http
            .mcp;
        assert_eq!(
            mcp,
            McpConfig {
                enabled: false,
                progress_interval: Duration::from_millis(250),
                allowed_hosts: vec!["tools.example.com".into()],
                sessions: false,
            }
        );
        for (bad, key) in [
            ("progress_interval_ms = 0", "mcp.progress_interval_ms"),
            ("allowed_hosts = [\"\"]", "mcp.allowed_hosts"),
            ("allowed_hosts = [\"https://x/\"]", "mcp.allowed_hosts"),
        ] {
            std::fs::write(&path, format!("[mcp]\n{bad}\n")).unwrap();
            let message = Config::load(Some(&path), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(message.contains(key), "{message}");
        }
    }

    #[test]
    fn http_settings_are_read_and_bad_origins_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        let config = Config::load(None, Overrides::default()).unwrap();
        assert_eq!(config.http, HttpConfig::default());
        assert!(config.http.cors_origins.is_empty());

        std::fs::write(
            &path,
            "[http]\ncors_origins = [\"https://app.example.com\", \"http://localhost:8080\"]\n\
             keep_alive_secs = 5\nws_max_runs = 3\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(
            config.http.cors_origins,
            ["https://app.example.com", "http://localhost:8080"]
        );
        assert_eq!(config.http.keep_alive, Duration::from_secs(5));
        assert_eq!(config.http.ws_max_runs, 3);

        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "https://a b",
        ] {
            std::fs::write(&path, format!("[http]\ncors_origins = [{bad:?}]\n")).unwrap();
            let message = Config::load(Some(&path), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(message.contains("http.cors_origins"), "{message}");
        }
    }

    #[test]
    fn connection_bounds_are_read_and_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        std::fs::write(
            &path,
            "[http]\nfirst_byte_timeout_ms = 300\nbody_timeout_ms = 400\nmax_connections = 5\n",
        )
        .unwrap();
        let http = Config::load(Some(&path), Overrides::default())
            .unwrap()
            .http;
        assert_eq!(http.first_byte_timeout, Duration::from_millis(300));
        assert_eq!(http.body_timeout, Duration::from_millis(400));
        assert_eq!(http.max_connections, 5);
        for key in [
            "first_byte_timeout_ms",
            "body_timeout_ms",
            "max_connections",
        ] {
            std::fs::write(&path, format!("[http]\n{key} = 0\n")).unwrap();
            let message = Config::load(Some(&path), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(message.contains(&format!("http.{key}")), "{message}");
        }
    }

    #[test]
    fn max_parallel_calls_is_read_and_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        std::fs::write(&path, "[model]\nmax_parallel_calls = 3\n").unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(config.model.max_parallel_calls, Some(3));

        std::fs::write(&path, "[model]\nmax_parallel_calls = 0\n").unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("model.max_parallel_calls"), "{message}");
    }

    #[test]
    fn tls_paths_in_the_file_are_relative_to_it_and_must_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        std::fs::write(
            &path,
            "[server]\ntls_cert = \"tls/s.pem\"\ntls_key = \"tls/s.key\"\n\
             tls_client_ca = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let tls = Config::load(Some(&path), Overrides::default())
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(tls.cert, dir.path().join("tls/s.pem"));
        assert_eq!(tls.key, dir.path().join("tls/s.key"));
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/etc/ca.pem")));

        let overrides = Overrides {
            tls_cert: Some("flag.pem".into()),
            ..Overrides::default()
        };
        let tls = Config::load(Some(&path), overrides).unwrap().tls.unwrap();
        assert_eq!(tls.cert, Path::new("flag.pem"));

        for (text, key) in [
            ("[server]\ntls_cert = \"a\"\n", "server.tls_key"),
            ("[server]\ntls_key = \"a\"\n", "server.tls_cert"),
            ("[server]\ntls_client_ca = \"a\"\n", "server.tls_client_ca"),
        ] {
            std::fs::write(&path, text).unwrap();
            let message = Config::load(Some(&path), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(message.contains(key), "{message}");
        }
    }

    #[test]
    fn tokens_are_read_as_digests_and_bad_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toolstream.toml");
        // SAFETY (edition 2024): no other test of this binary reads this variable.
        unsafe { std::env::set_var("TOOLSTREAM_CONFIG_TEST_TOKEN", "from-env") };
        std::fs::write(
            &path,
            format!(
                "[auth]\nmax_runs_per_principal = 3\n\n[[auth.tokens]]\nname = \"a\"\n\
                 sha256 = \"{}\"\ntools = [\"ticks\"]\n\n[[auth.tokens]]\nname = \"b\"\n\
                 token_env = \"TOOLSTREAM_CONFIG_TEST_TOKEN\"\n",
                "AB".repeat(32)
            ),
        )
        .unwrap();
        let config = Config::load(Some(&path), Overrides::default()).unwrap();
        assert!(config.auth.is_enabled());
        assert_eq!(config.limits.max_runs_per_owner, Some(3));
        let tokens = &config.auth.tokens;
        assert_eq!(tokens[0].sha256, [0xab; 32]);
        assert!(tokens[0].principal.tools.allows("ticks"));
        assert!(!tokens[0].principal.tools.allows("checksum"));
        assert_eq!(tokens[1].sha256, token_digest("from-env"));
        assert_eq!(tokens[1].principal.tools, ToolScope::All);
        assert!(!format!("{config:?}").contains("from-env"));

        for (entry, expected) in [
            ("name = \"x\"\nsha256 = \"abc\"", "64 hex digits"),
            (
                "name = \"x\"\ntoken_env = \"TOOLSTREAM_UNSET_FOR_TEST\"",
                "not set",
            ),
            ("name = \"x\"", "exactly one of sha256"),
            (
                "name = \"\"\ntoken_env = \"TOOLSTREAM_CONFIG_TEST_TOKEN\"",
                "empty `name`",
            ),
            ("name = \"x\"\ntoken = \"plain\"", "token"),
        ] {
            std::fs::write(&path, format!("[[auth.tokens]]\n{entry}\n")).unwrap();
            let message = Config::load(Some(&path), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(message.contains(expected), "{entry}: {message}");
        }
        std::fs::write(&path, "[auth]\nmax_runs_per_principal = 0\n").unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("max_runs_per_principal"), "{message}");
        std::fs::write(&path, "[auth]\nprincipal_from_client_cert = true\n").unwrap();
        let message = Config::load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("tls_client_ca"), "{message}");
        let config = Config::load(None, Overrides::default()).unwrap();
        assert!(!config.auth.is_enabled() && config.tls.is_none());
    }
}
