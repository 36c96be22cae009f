//! The tools every server has with no configuration: useful on their own, and for demos and load
//! tests.

mod checksum;
mod confinement;
mod ticks;

use std::path::PathBuf;
use std::sync::Arc;

pub use checksum::checksum;
pub use confinement::{ConfinedFile, Confinement};
pub use ticks::ticks;

use super::Tool;

/// Every built-in tool; file tools are confined to `root`.
pub fn builtin_tools(root: Confinement) -> Vec<Arc<dyn Tool>> {
    vec![Arc::new(ticks()), Arc::new(checksum(root))]
}

/// Resolves the root directory for file tools, failing with a message a person can act on.
pub fn confine_to(root: impl Into<PathBuf>) -> std::io::Result<Confinement> {
    Confinement::new(root.into())
}
