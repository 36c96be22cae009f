//! `[mcp]`: the registry served to MCP clients at `/mcp`.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct McpFile {
    pub(super) enabled: Option<bool>,
    pub(super) progress_interval_ms: Option<u64>,
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) sessions: Option<bool>,
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

/// `[mcp]` checked: the interval is positive, host names are not empty.
pub(super) fn mcp_config(file: McpFile) -> Result<McpConfig, ConfigError> {
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
