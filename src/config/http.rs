//! `[http]`: the HTTP side of the listener (browsers, SSE and WebSocket clients).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::mcp::McpConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpFile {
    pub(super) cors_origins: Option<Vec<String>>,
    pub(super) keep_alive_secs: Option<u64>,
    pub(super) ws_max_runs: Option<usize>,
    pub(super) first_byte_timeout_ms: Option<u64>,
    pub(super) body_timeout_ms: Option<u64>,
    pub(super) max_connections: Option<usize>,
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
    /// HTTP/2 streams open at once per connection (`[limits] max_concurrent_streams`).
    pub max_concurrent_streams: u32,
    /// `[mcp]`: the registry as an MCP server at `/mcp`.
    pub mcp: McpConfig,
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
            max_concurrent_streams: 16_384,
            mcp: McpConfig::default(),
        }
    }
}

/// `[http]` checked: every origin is `*` or `scheme://host[:port]`, the numbers are positive.
pub(super) fn http_config(file: HttpFile) -> Result<HttpConfig, ConfigError> {
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
        max_concurrent_streams: defaults.max_concurrent_streams,
        mcp: McpConfig::default(),
    })
}
