//! The caller of an operation, and what it may touch: the policy the operations consult.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::engine::Owner;

/// The tools a principal may run and see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolScope {
    /// Every tool of the server.
    All,
    /// Only these names.
    Only(BTreeSet<String>),
}

impl ToolScope {
    /// A `tools` setting as written: absent, or a list holding `"*"`, is every tool.
    pub fn from_list(tools: Option<Vec<String>>) -> ToolScope {
        match tools {
            None => ToolScope::All,
            Some(tools) if tools.iter().any(|tool| tool == "*") => ToolScope::All,
            Some(tools) => ToolScope::Only(tools.into_iter().collect()),
        }
    }

    /// Whether `tool` is in the scope.
    pub fn allows(&self, tool: &str) -> bool {
        match self {
            ToolScope::All => true,
            ToolScope::Only(tools) => tools.contains(tool),
        }
    }
}

/// A caller with a name: runs belong to it, and it may use the tools of its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The name of its `[[auth.tokens]]` entry, or its client certificate's subject CN.
    pub name: Arc<str>,
    /// What it may run.
    pub tools: ToolScope,
}

/// Who calls, as its face authenticated it: anyone (auth off, or a route outside auth), or a
/// principal. A face reads it from the request's extensions, where the authentication layer put
/// it; absent means [`Caller::Anonymous`], which only happens with auth off since the layer puts
/// one on every call it lets through.
#[derive(Debug, Clone, Default)]
pub enum Caller {
    /// No principal: every tool, every run.
    #[default]
    Anonymous,
    /// A principal's call.
    Principal(Arc<Principal>),
}

impl Caller {
    /// The owner runs started by this call get: the principal, by name, or no one.
    pub fn owner(&self) -> Option<Owner> {
        match self {
            Caller::Anonymous => None,
            Caller::Principal(principal) => Some(Owner::new(Arc::clone(&principal.name))),
        }
    }

    /// Whether the call may run and see `tool`.
    pub fn may_use(&self, tool: &str) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Principal(principal) => principal.tools.allows(tool),
        }
    }

    /// Whether the call may see a run owned by `owner`: with auth on, only its own.
    pub fn may_see(&self, owner: Option<&Owner>) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Principal(principal) => {
                owner.is_some_and(|owner| owner.as_str() == &*principal.name)
            }
        }
    }

    /// The principal's name, for error messages (`None` for an anonymous caller).
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Principal(principal) => Some(&principal.name),
        }
    }

    /// The tools this caller is limited to, when it is (`None`: every tool).
    pub fn tool_limit(&self) -> Option<&BTreeSet<String>> {
        match self {
            Caller::Principal(principal) => match &principal.tools {
                ToolScope::Only(tools) => Some(tools),
                ToolScope::All => None,
            },
            Caller::Anonymous => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_star_and_absence_as_every_tool() {
        assert_eq!(ToolScope::from_list(None), ToolScope::All);
        assert_eq!(
            ToolScope::from_list(Some(vec!["*".into(), "a".into()])),
            ToolScope::All
        );
        let only = ToolScope::from_list(Some(vec!["a".into()]));
        assert!(only.allows("a") && !only.allows("b"));
        assert!(!ToolScope::from_list(Some(vec![])).allows("a"));
    }

    #[test]
    fn a_principal_sees_only_its_own_runs_and_anyone_sees_all() {
        let alpha = Caller::Principal(Arc::new(Principal {
            name: Arc::from("alpha"),
            tools: ToolScope::from_list(Some(vec!["a".into()])),
        }));
        let (own, other) = (Owner::new("alpha"), Owner::new("beta"));
        assert!(alpha.may_see(Some(&own)));
        assert!(!alpha.may_see(Some(&other)) && !alpha.may_see(None));
        assert!(alpha.may_use("a") && !alpha.may_use("b"));
        assert_eq!(alpha.owner(), Some(own));
        assert!(Caller::Anonymous.may_see(Some(&other)) && Caller::Anonymous.may_see(None));
        assert_eq!(Caller::Anonymous.owner(), None);
    }
}
