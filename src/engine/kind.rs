//! What a run runs: a tool or an agent.

use std::sync::Arc;

/// What a run runs: one tool of the registry, or an agent (a model calling tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunKind {
    /// A run of the tool of this name (RunTool).
    Tool(Arc<str>),
    /// An agent run (RunAgent).
    Agent,
}

impl RunKind {
    /// A run of the tool `name`.
    pub fn tool_run(name: impl Into<Arc<str>>) -> Self {
        RunKind::Tool(name.into())
    }

    /// The kind the name written in a record stands for: a tool's, or an empty one for an agent
    /// run (the form the contract's `Run.tool` and the stored records keep; no tool has an
    /// empty name).
    pub fn from_tool_name(name: &str) -> Self {
        if name.is_empty() {
            RunKind::Agent
        } else {
            RunKind::Tool(Arc::from(name))
        }
    }

    /// The tool it runs; `None` for an agent run.
    pub fn tool(&self) -> Option<&str> {
        match self {
            RunKind::Tool(name) => Some(name),
            RunKind::Agent => None,
        }
    }

    /// The tool's name, empty for an agent run: the inverse of [`Self::from_tool_name`].
    pub fn tool_name(&self) -> &str {
        self.tool().unwrap_or_default()
    }

    /// Whether it is an agent run.
    pub fn is_agent(&self) -> bool {
        matches!(self, RunKind::Agent)
    }
}
