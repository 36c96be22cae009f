//! ListTools: the tools the caller may use.

use super::{Caller, Operations};
use crate::tools::ToolSpec;

impl Operations {
    /// Every tool of the registry the caller may run, with its schemas.
    pub fn list_tools(&self, caller: &Caller) -> Vec<ToolSpec> {
        let mut specs = self.engine.registry().specs();
        specs.retain(|spec| caller.may_use(&spec.name));
        specs
    }
}
