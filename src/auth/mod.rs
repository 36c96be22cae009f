//! Who is calling, and what they may do: bearer tokens (or a client certificate's subject CN)
//! resolved to a [`Principal`], and [`Access`], the one place where a principal's limits are
//! applied to the engine's calls (gRPC, gRPC-Web, the JSON routes, SSE and the WebSocket all go
//! through it).
//!
//! Auth is off unless `[[auth.tokens]]` entries are configured (or `[auth]
//! principal_from_client_cert`): every call is then [`Access::Open`] and runs belong to no one.
//! With auth on, the web face's auth layer (`src/web/credentials.rs`) answers UNAUTHENTICATED (HTTP 401) to a call without a valid token,
//! except health, reflection, `/healthz`, `/metrics` and the page itself, and puts the caller's
//! [`Access`] in the request's extensions for the services to read.
//!
//! What a principal may do:
//! - run and see only the tools its entry lists (`tools`; absent or `["*"]`: every tool):
//!   ListTools shows only those, RunTool of another is PERMISSION_DENIED, an agent is offered
//!   only those;
//! - see only its own runs: GetRun, WatchRun and CancelRun of another principal's run answer
//!   NOT_FOUND, exactly as for an id that does not exist, and ListRuns leaves them out;
//! - have at most `[auth] max_runs_per_principal` runs in progress (RESOURCE_EXHAUSTED beyond).
//!
//! Tokens never sit in the config file: an entry holds the SHA-256 digest of its token, or names
//! the environment variable holding it (hashed when the config is read). A presented token is
//! hashed and compared with every entry's digest in constant time.

use std::collections::BTreeSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::agent::{Agent, AgentRequest};
use crate::engine::{
    Engine, EventStream, ReadFrom, Reply, RunError, RunFilter, RunHandle, RunOptions, RunPage,
    RunSnapshot, ToolRunRequest,
};
use crate::tools::ToolSpec;

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

/// One configured token: its digest and the principal it stands for.
#[derive(Clone)]
pub struct TokenEntry {
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// Who presents it.
    pub principal: Arc<Principal>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the token, but not worth printing either: a digest only helps an attacker.
        f.debug_struct("TokenEntry")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// `[auth]`: the tokens and how client certificates are used.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`, digests already computed.
    pub tokens: Vec<TokenEntry>,
    /// `principal_from_client_cert`: a client with a certificate (mTLS) and no token is the
    /// principal its certificate's subject CN names.
    pub principal_from_client_cert: bool,
    /// `client_cert_tools`: what such a principal may run (absent: every tool).
    pub client_cert_tools: Option<ToolScope>,
}

impl AuthConfig {
    /// Whether any call needs credentials.
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty() || self.principal_from_client_cert
    }
}

/// SHA-256 of `token`.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Resolves credentials to principals.
#[derive(Debug)]
pub(crate) struct Authenticator {
    config: AuthConfig,
}

impl Authenticator {
    pub(crate) fn new(config: AuthConfig) -> Self {
        Authenticator { config }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.config.is_enabled()
    }

    /// The principal `token` stands for. Every entry is compared, in constant time, whatever
    /// matches: the time taken says nothing of which digest was close.
    pub(crate) fn by_token(&self, token: &str) -> Option<Arc<Principal>> {
        let digest = token_digest(token);
        let mut found = None;
        for entry in &self.config.tokens {
            if bool::from(entry.sha256.ct_eq(&digest)) && found.is_none() {
                found = Some(Arc::clone(&entry.principal));
            }
        }
        found
    }

    /// The principal a verified client certificate with subject CN `common_name` stands for,
    /// when certificates name principals.
    pub(crate) fn by_client_cert(&self, common_name: &str) -> Option<Arc<Principal>> {
        if !self.config.principal_from_client_cert || common_name.is_empty() {
            return None;
        }
        Some(Arc::new(Principal {
            name: Arc::from(common_name),
            tools: self
                .config
                .client_cert_tools
                .clone()
                .unwrap_or(ToolScope::All),
        }))
    }
}

/// What a call may do: everything (auth off, or a route outside auth), or what its principal
/// may. The services read it from the request's extensions; absent means [`Access::Open`], which
/// only happens with auth off since the auth layer puts it on every call it lets through.
#[derive(Debug, Clone, Default)]
pub enum Access {
    /// No principal: every tool, every run.
    #[default]
    Open,
    /// A principal's call.
    Principal(Arc<Principal>),
}

impl Access {
    /// The access the auth layer recorded for a gRPC call.
    pub fn of_grpc<T>(request: &tonic::Request<T>) -> Access {
        request
            .extensions()
            .get::<Access>()
            .cloned()
            .unwrap_or_default()
    }

    /// The access the auth layer recorded for an HTTP request.
    pub fn of_http(extensions: &axum::http::Extensions) -> Access {
        extensions.get::<Access>().cloned().unwrap_or_default()
    }

    /// The principal runs started by this call belong to.
    pub fn principal(&self) -> Option<Arc<str>> {
        match self {
            Access::Open => None,
            Access::Principal(principal) => Some(Arc::clone(&principal.name)),
        }
    }

    /// Whether the call may run and see `tool`.
    pub fn may_use(&self, tool: &str) -> bool {
        match self {
            Access::Open => true,
            Access::Principal(principal) => principal.tools.allows(tool),
        }
    }

    fn check_tool(&self, tool: &str) -> Result<(), RunError> {
        match self {
            Access::Principal(principal) if !principal.tools.allows(tool) => {
                Err(RunError::PermissionDenied(format!(
                    "{:?} may not run tool {tool:?}; its token's `tools` do not list it",
                    principal.name
                )))
            }
            _ => Ok(()),
        }
    }

    /// The tools the call may see.
    pub fn tool_specs(&self, engine: &Engine) -> Vec<ToolSpec> {
        let mut specs = engine.registry().specs();
        specs.retain(|spec| self.may_use(&spec.name));
        specs
    }

    /// RunTool, for a tool the call may use; the run belongs to the call's principal.
    pub fn run_tool(
        &self,
        engine: &Engine,
        mut request: ToolRunRequest,
    ) -> Result<RunHandle, RunError> {
        self.check_tool(&request.tool)?;
        request.principal = self.principal();
        engine.run_tool(request)
    }

    /// RunAgent, offering the model only tools the call may use: those it names (each must be
    /// allowed) or, naming none, every tool the principal may use.
    pub fn run_agent(
        &self,
        agent: &Agent,
        mut request: AgentRequest,
    ) -> Result<RunHandle, RunError> {
        if let Access::Principal(principal) = self {
            if request.tools.is_empty() {
                if let ToolScope::Only(_) = principal.tools {
                    request.tools = self
                        .tool_specs(agent.engine())
                        .into_iter()
                        .map(|spec| spec.name)
                        .collect();
                    if request.tools.is_empty() {
                        return Err(RunError::PermissionDenied(format!(
                            "{:?} may run none of this server's tools, so an agent has none to \
                             call",
                            principal.name
                        )));
                    }
                }
            } else {
                for tool in &request.tools {
                    self.check_tool(tool)?;
                }
            }
        }
        request.principal = self.principal();
        agent.start(request)
    }

    /// Whether the call may see `run`: with auth on, only its own principal's runs.
    fn sees(&self, run: &RunSnapshot) -> bool {
        match self {
            Access::Open => true,
            Access::Principal(principal) => run.principal.as_deref() == Some(&*principal.name),
        }
    }

    /// GetRun: another principal's run is NOT_FOUND, exactly like an unknown id.
    pub async fn get_run(&self, engine: &Engine, run_id: &str) -> Result<RunSnapshot, RunError> {
        let run = engine.get_run(run_id).await?;
        if !self.sees(&run) {
            return Err(RunError::UnknownRun(run_id.to_owned()));
        }
        Ok(run)
    }

    /// WatchRun of a run the call may see.
    pub async fn watch_run(
        &self,
        engine: &Engine,
        run_id: &str,
        from: ReadFrom,
        options: &RunOptions,
    ) -> Result<EventStream, RunError> {
        // A run's principal never changes, so checking first is as good as checking together.
        self.get_run(engine, run_id).await?;
        engine.watch_run(run_id, from, options).await
    }

    /// CancelRun of a run the call may see.
    pub async fn cancel_run(&self, engine: &Engine, run_id: &str) -> Result<RunSnapshot, RunError> {
        self.get_run(engine, run_id).await?;
        engine.cancel_run(run_id).await
    }

    /// RespondToRun: answers an input request of a run the call may see (another principal's
    /// run is unknown to it, as for GetRun).
    pub async fn respond(
        &self,
        engine: &Engine,
        run_id: &str,
        request_id: &str,
        reply: Reply,
    ) -> Result<RunSnapshot, RunError> {
        self.get_run(engine, run_id).await?;
        engine.respond(run_id, request_id, reply).await
    }

    /// ListRuns of the runs the call may see.
    pub async fn list_runs(
        &self,
        engine: &Engine,
        mut filter: RunFilter,
    ) -> Result<RunPage, RunError> {
        filter.principal = self.principal();
        engine.list_runs(&filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(name: &str, tools: ToolScope) -> Arc<Principal> {
        Arc::new(Principal {
            name: Arc::from(name),
            tools,
        })
    }

    #[test]
    fn a_token_is_matched_by_its_digest_and_a_wrong_one_is_not() {
        let auth = Authenticator::new(AuthConfig {
            tokens: vec![
                TokenEntry {
                    sha256: token_digest("alpha-token"),
                    principal: principal("alpha", ToolScope::All),
                },
                TokenEntry {
                    sha256: token_digest("beta-token"),
                    principal: principal("beta", ToolScope::from_list(Some(vec!["x".into()]))),
                },
            ],
            ..AuthConfig::default()
        });
        assert!(auth.is_enabled());
        assert_eq!(&*auth.by_token("alpha-token").unwrap().name, "alpha");
        assert_eq!(&*auth.by_token("beta-token").unwrap().name, "beta");
        assert!(auth.by_token("beta-token ").is_none());
        assert!(auth.by_token("").is_none());
        assert!(auth.by_client_cert("alpha").is_none());
    }

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
}
