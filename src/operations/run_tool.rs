//! RunTool: one tool, as a run the caller owns.

use super::{Caller, Operations, once_stored};
use crate::engine::{RunError, RunHandle, ToolRunRequest};

impl Operations {
    /// Starts `request.tool` if the caller may use it; the run belongs to the caller. Answers
    /// once the run is recorded in the run store.
    pub async fn run_tool(
        &self,
        caller: &Caller,
        mut request: ToolRunRequest,
    ) -> Result<RunHandle, RunError> {
        check_tool(caller, &request.tool)?;
        request.owner = caller.owner();
        once_stored(self.engine.run_tool(request).await?).await
    }
}

/// PERMISSION_DENIED for a tool outside the caller's scope.
pub(super) fn check_tool(caller: &Caller, tool: &str) -> Result<(), RunError> {
    if caller.may_use(tool) {
        return Ok(());
    }
    Err(RunError::PermissionDenied(format!(
        "{:?} may not run tool {tool:?}; its token's `tools` do not list it",
        caller.name().unwrap_or_default()
    )))
}
