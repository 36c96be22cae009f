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
//!
//! One file per section, beside what it builds: the top-level keys (`listen.rs`),
//! `[limits]` and the run limits (`limits.rs`, the engine's [`Limits`]), `[runs]` (`runs.rs`,
//! the engine's [`StoreConfig`]), `[http]` (`http.rs`), `[mcp]` (`mcp.rs`), `[server]`
//! (`tls.rs`), `[auth]` (`auth.rs`), `[model]` (`model.rs`), `[[webhooks]]` and
//! `[webhook_delivery]` (`webhooks.rs`); `[[tools]]` entries are kept as written for
//! [`crate::configured_tools`]. `load.rs` reads the file and resolves the sections in order;
//! `overrides.rs` holds the flags of `toolstream serve`; `paths.rs` the files settings name.

mod auth;
mod http;
mod limits;
mod listen;
mod load;
mod mcp;
mod model;
mod overrides;
mod paths;
mod runs;
mod tls;
mod webhooks;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use self::http::HttpConfig;
pub use crate::engine::{DEFAULT_KEY_PREFIX, DEFAULT_LEASE, Limits, RedisClientCert, StoreConfig};
pub use listen::{DEFAULT_LISTEN, LogFormat};
pub use mcp::McpConfig;
pub use model::ModelConfig;
pub use overrides::Overrides;
pub use webhooks::{WebhookDelivery, WebhookEntry};

use crate::auth::AuthConfig;
use crate::tls::TlsFiles;

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
