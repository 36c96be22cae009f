//! The product's verbs, once for every face. Each takes the [`Caller`] its face authenticated
//! and a domain request, applies the caller's policy (which tools, whose runs), and returns a
//! domain result that is authorised and, for a started run, recorded in the run store, so that
//! every replica knows the id its caller gets.
//!
//! gRPC and gRPC-Web (`crate::transport`), the JSON routes, SSE and the WebSocket (`src/web/`)
//! are adapters over these: decode, call one operation, encode. One file per verb:
//!
//! | verb | file | what it adds to the engine's call |
//! |---|---|---|
//! | [`Operations::list_tools`] | `list_tools.rs` | only the caller's tools |
//! | [`Operations::run_tool`] | `run_tool.rs` | scope check, owner, waits until stored |
//! | [`Operations::run_agent`] | `run_agent.rs` | the tools offered, owner, waits until stored |
//! | [`Operations::get_run`] | `get_run.rs` | another's run is NOT_FOUND |
//! | [`Operations::list_runs`] | `list_runs.rs` | only the caller's runs |
//! | [`Operations::watch_run`] | `watch_run.rs` | another's run is NOT_FOUND |
//! | [`Operations::cancel_run`] | `cancel_run.rs` | another's run is NOT_FOUND |
//! | [`Operations::respond`] | `respond.rs` | another's run is NOT_FOUND |

mod cancel_run;
mod get_run;
mod list_runs;
mod list_tools;
mod respond;
mod run_agent;
mod run_tool;
mod watch_run;

use std::sync::Arc;

use crate::agent::Agent;
pub use crate::auth::Caller;
use crate::engine::{Engine, RunError, RunHandle};
pub use watch_run::WatchRequest;

/// The verbs, over one engine and the agent that runs on it.
#[derive(Clone)]
pub struct Operations {
    engine: Arc<Engine>,
    agent: Arc<Agent>,
}

impl Operations {
    /// The operations of `agent`'s engine.
    pub fn new(agent: Arc<Agent>) -> Self {
        Operations {
            engine: Arc::clone(agent.engine()),
            agent,
        }
    }

    /// Whether agents can run here (a model is configured).
    pub fn has_model(&self) -> bool {
        self.agent.has_model()
    }

    /// The engine, for what is not an operation on runs (health, metrics, the registry's
    /// sources).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

/// A run id as given: an empty one is a mistake of the caller's, said as such (an unknown one is
/// NOT_FOUND, from the engine).
fn given_run_id(run_id: &str) -> Result<&str, RunError> {
    if run_id.is_empty() {
        return Err(RunError::InvalidArguments(
            "run_id is empty; pass the id from the x-run-id header or the run's started event"
                .to_owned(),
        ));
    }
    Ok(run_id)
}

/// `handle` once its run is recorded in the run store. (A run of the memory store is recorded
/// when it starts; only a shared store's is waited for, and the wait is boxed so that the common
/// case carries none of its state.)
async fn once_stored(handle: RunHandle) -> Result<RunHandle, RunError> {
    if handle.is_stored() {
        return Ok(handle);
    }
    Box::pin(async move {
        let mut handle = handle;
        handle.stored().await?;
        Ok(handle)
    })
    .await
}
