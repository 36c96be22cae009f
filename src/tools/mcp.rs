//! MCP tools: every tool of an MCP server started over stdio.

use std::path::Path;
use std::sync::Arc;

use super::Tool;

/// Starts the MCP server of a `[[tools]]` entry and lists its tools.
pub async fn from_entry(
    _entry: &toml::Table,
    _base_dir: &Path,
) -> Result<Vec<Arc<dyn Tool>>, String> {
    Err("kind \"mcp\" is not implemented yet".into())
}
