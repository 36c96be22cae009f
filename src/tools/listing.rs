//! What a source whose tools change while the server runs (a remote server) fills: defined
//! here, implemented by the registry's tool sets, so that tools never name the registry.

use std::sync::Arc;

use super::Tool;

/// Where such a source puts each new listing of its tools.
pub trait ToolListing: Send + Sync {
    /// Makes `tools` the source's tools now, and says what changed.
    fn replace(&self, tools: Vec<Arc<dyn Tool>>) -> ToolSetChange;

    /// Records why the source cannot be listed now, or (`None`) that it can again.
    fn set_unreachable(&self, reason: Option<String>);
}

/// What a new listing changed.
#[derive(Debug, Default, PartialEq)]
pub struct ToolSetChange {
    /// Tools that were not in the set before.
    pub added: Vec<String>,
    /// Tools that are no longer in the set.
    pub removed: Vec<String>,
    /// Tools left out, each with the reason (a name taken by another tool, an invalid schema).
    pub refused: Vec<String>,
}

impl ToolSetChange {
    /// Whether the set's tools stayed the same.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}
