//! RunAgent: a model calling tools, as a run the caller owns.

use super::run_tool::check_tool;
use super::{Caller, Operations, once_stored};
use crate::agent::AgentRequest;
use crate::engine::{RunError, RunHandle};

impl Operations {
    /// Starts an agent offered only tools the caller may use: those the request names (each
    /// must be allowed) or, naming none, every tool the caller may use. Answers once the run is
    /// recorded in the run store.
    pub async fn run_agent(
        &self,
        caller: &Caller,
        mut request: AgentRequest,
    ) -> Result<RunHandle, RunError> {
        if request.tools.is_empty() {
            if caller.tool_limit().is_some() {
                request.tools = self
                    .list_tools(caller)
                    .into_iter()
                    .map(|spec| spec.name)
                    .collect();
                if request.tools.is_empty() {
                    return Err(RunError::PermissionDenied(format!(
                        "{:?} may run none of this server's tools, so an agent has none to call",
                        caller.name().unwrap_or_default()
                    )));
                }
            }
        } else {
            for tool in &request.tools {
                check_tool(caller, tool)?;
            }
        }
        request.owner = caller.owner();
        once_stored(self.agent.start(request).await?).await
    }
}
