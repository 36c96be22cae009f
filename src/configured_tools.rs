//! The registry a configuration describes: the built-in tools, then the tools of the config file,
//! where each `[[tools]]` entry names a `kind` and is turned into one or more tools by the module
//! of that kind.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, Limits};
use crate::registry::{RegistryError, ToolRegistry};
use crate::tools::builtin::{builtin_tools, confine_to};
use crate::tools::{command, mcp, remote};

/// Why the tools of a configuration could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The root directory for file tools is unusable.
    #[error("{0}")]
    Root(std::io::Error),
    /// A tool could not be registered.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A `[[tools]]` entry of the config file is wrong.
    #[error(transparent)]
    Entry(#[from] SourceError),
}

/// Builds the registry: the built-in tools, then the config file's `[[tools]]` entries.
pub async fn build_registry(config: &Config) -> Result<ToolRegistry, BuildError> {
    let mut registry = ToolRegistry::new();
    let root = confine_to(&config.root).map_err(BuildError::Root)?;
    for tool in builtin_tools(root) {
        registry.register(tool)?;
    }
    // Relative paths in entries are relative to the config file's directory.
    load_entries(
        &config.tools,
        &config.base_dir(),
        &config.limits,
        &mut registry,
    )
    .await?;
    Ok(registry)
}

/// A `[[tools]]` entry that cannot be used; the message names the entry and the problem.
#[derive(Debug, thiserror::Error)]
#[error("config file, [[tools]] entry {index}{name}: {message}")]
pub struct SourceError {
    /// 1-based position of the entry in the file.
    pub index: usize,
    /// `` (name "x")`` when the entry has a name or prefix, empty otherwise.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// Adds the tools of every entry to `registry`. Relative paths in entries (a command's `cwd`) are
/// resolved against `base_dir`, the config file's directory. Remote tools talk to their server
/// within `limits.max_message_bytes`, like this server's own clients.
pub async fn load_entries(
    entries: &[toml::Table],
    base_dir: &Path,
    limits: &Limits,
    registry: &mut ToolRegistry,
) -> Result<(), SourceError> {
    for (position, entry) in entries.iter().enumerate() {
        let index = position + 1;
        let label = entry
            .get("name")
            .or_else(|| entry.get("prefix"))
            .and_then(|v| v.as_str())
            .map(|n| format!(" ({n:?})"))
            .unwrap_or_default();
        let fail = |message: String| SourceError {
            index,
            name: label.clone(),
            message,
        };
        let kind = entry
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| fail("missing `kind` (one of \"command\", \"mcp\", \"grpc\")".into()))?;
        let tools: Vec<Arc<dyn crate::tools::Tool>> = match kind {
            "command" => vec![command::from_entry(entry, base_dir).await.map_err(fail)?],
            "mcp" => mcp::from_entry(entry, base_dir).await.map_err(fail)?,
            "grpc" => {
                // A remote's tools may change while the server runs: they are a set of their
                // own, kept current in the background.
                let remote = remote::from_entry(entry, base_dir, limits.max_message_bytes)
                    .await
                    .map_err(fail)?;
                let set = registry
                    .register_set(remote.label(), remote.tools())
                    .map_err(|e| fail(e.to_string()))?;
                if let Some(error) = remote.unreachable() {
                    // Not fatal: a worker started beside the server may not be up yet.
                    tracing::warn!(
                        source = %remote.label(),
                        %error,
                        "remote unreachable at start-up: serving without its tools until it answers (retrying in the background)"
                    );
                }
                remote.keep_listed(set);
                continue;
            }
            other => {
                return Err(fail(format!(
                    "unknown kind {other:?}; use \"command\", \"mcp\" or \"grpc\""
                )));
            }
        };
        for tool in tools {
            registry.register(tool).map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(())
}
