//! Command tools: a subprocess per run speaking the JSON-lines protocol (see DESIGN.md).

use std::path::Path;
use std::sync::Arc;

use super::Tool;

/// Builds a command tool from its `[[tools]]` entry.
pub fn from_entry(_entry: &toml::Table, _base_dir: &Path) -> Result<Arc<dyn Tool>, String> {
    Err("kind \"command\" is not implemented yet".into())
}
