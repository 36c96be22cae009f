//! Who is calling: bearer tokens (or a client certificate's subject CN) resolved to a
//! [`Principal`], and the [`Caller`] each face hands to the operations (`crate::operations`),
//! which consult it before they act (the policy: which tools, whose runs).
//!
//! Auth is off unless `[[auth.tokens]]` entries are configured (or `[auth]
//! principal_from_client_cert`): every call is then [`Caller::Anonymous`] and runs belong to no
//! one. With auth on, the authentication layer of the one port (`src/web/credentials.rs`, around
//! gRPC, gRPC-Web and HTTP alike) answers UNAUTHENTICATED (HTTP 401) to a call without a valid
//! token, except health, reflection, `/healthz`, `/metrics` and the page itself, and records the
//! [`Caller`] in the request's extensions for the faces to read.
//!
//! What a principal may do (the operations apply it):
//! - run and see only the tools its entry lists (`tools`; absent or `["*"]`: every tool):
//!   ListTools shows only those, RunTool of another is PERMISSION_DENIED, an agent is offered
//!   only those;
//! - see only its own runs: GetRun, WatchRun and CancelRun of another principal's run answer
//!   NOT_FOUND, exactly as for an id that does not exist, and ListRuns leaves them out;
//! - have at most `[auth] max_runs_per_principal` runs in progress (RESOURCE_EXHAUSTED beyond).
//!
//! Tokens never sit in the config file: an entry holds the SHA-256 digest of its token, or names
//! the environment variable holding it (hashed when the config is read). A presented token is
//! hashed and compared with every entry's digest in constant time ([`tokens`]).

mod caller;
mod tokens;

pub use caller::{Caller, Principal, ToolScope};
pub(crate) use tokens::Authenticator;
pub use tokens::{AuthConfig, TokenEntry, token_digest};
