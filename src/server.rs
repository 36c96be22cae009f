//! The listening server: the tool service with health and reflection beside it, HTTP/2 and TCP
//! settings chosen on purpose, and graceful shutdown.
//!
//! Shutdown: when the shutdown signal fires, health turns NOT_SERVING (so load balancers and
//! Kubernetes stop sending work), the engine refuses new runs with UNAVAILABLE, runs in progress
//! get the grace period to finish, the rest are cancelled, and then connections are closed.
//!
//! Health also follows the run store: NOT_SERVING while a shared store cannot be reached.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::agent::openai::OpenAiProvider;
use crate::agent::{
    Agent, AgentSettings, DEFAULT_MAX_PARALLEL_CALLS, DEFAULT_MAX_STEPS, ModelProvider,
};
use crate::config::{Limits, ModelConfig};
use crate::engine::{Engine, Store};
use crate::pb;
use crate::pb::run_service_server::RunServiceServer;
use crate::pb::tool_service_server::ToolServiceServer;
use crate::registry::ToolRegistry;
use crate::tools::from_config::BuildError;
use crate::transport::{RunServiceImpl, ToolServiceImpl};

/// The services health reports, besides the server as a whole (`""`).
pub const SERVICE_NAMES: [&str; 2] = [
    <ToolServiceServer<ToolServiceImpl> as tonic::server::NamedService>::NAME,
    <RunServiceServer<RunServiceImpl> as tonic::server::NamedService>::NAME,
];

/// How long connections may take to close after the runs ended at shutdown. A client that stopped
/// reading never lets its stream's last frames drain; past this the server closes regardless.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The tools could not be set up.
    #[error(transparent)]
    Tools(#[from] BuildError),
    /// The model endpoint is unusable.
    #[error("model: {0}")]
    Model(#[from] crate::agent::ModelError),
    /// Reflection could not be built from the descriptors.
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("server error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A server ready to serve: the engine and the limits it runs with.
pub struct Server {
    engine: Arc<Engine>,
    limits: Limits,
    agent: AgentSettings,
}

impl Server {
    /// A server running the tools of `registry`.
    pub fn new(registry: ToolRegistry, limits: Limits) -> Self {
        let engine = Engine::new(Arc::new(registry), limits);
        Server {
            engine,
            limits,
            agent: AgentSettings::default(),
        }
    }

    /// Keeps runs in `store` (the in-memory store otherwise).
    pub fn with_store(mut self, store: Store) -> Self {
        self.engine = Engine::with_store(Arc::clone(self.engine.registry()), self.limits, store);
        self
    }

    /// Lets RunAgent use the model `config` describes (no URL: RunAgent stays unavailable).
    pub fn with_model(self, config: &ModelConfig) -> Result<Self, ServeError> {
        let provider: Option<Arc<dyn ModelProvider>> = match &config.url {
            Some(url) => Some(Arc::new(OpenAiProvider::new(url, config.api_key.clone())?)),
            None => None,
        };
        Ok(self.with_agent(AgentSettings {
            provider,
            default_model: config.name.clone(),
            default_max_steps: config.max_steps.unwrap_or(DEFAULT_MAX_STEPS),
            max_parallel_calls: config
                .max_parallel_calls
                .unwrap_or(DEFAULT_MAX_PARALLEL_CALLS),
        }))
    }

    /// Lets RunAgent use `settings` (any [`ModelProvider`], for embedding and tests).
    pub fn with_agent(mut self, settings: AgentSettings) -> Self {
        self.agent = settings;
        self
    }

    /// The engine, for embedding and tests.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Serves on `listener` until `shutdown` completes, then shuts down gracefully.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            engine,
            limits,
            agent,
        } = self;
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in SERVICE_NAMES {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        // Set once shutdown began: health then stays NOT_SERVING whatever the store does.
        let shutting_down = Arc::new(tokio::sync::Mutex::new(false));
        tokio::spawn(follow_store_health(
            engine.store_health(),
            health.clone(),
            Arc::clone(&shutting_down),
        ));

        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let reflection_v1 = reflection.build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let runs = RunServiceServer::new(RunServiceImpl::new(Arc::clone(&engine)))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
        let agent = Agent::new(Arc::clone(&engine), agent);
        let tools = ToolServiceServer::new(ToolServiceImpl::new(Arc::clone(&engine), agent))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);

        // Progress is many small messages: Nagle's algorithm would hold them back.
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));

        let grace = limits.grace_period;
        let (drained_tx, drained) = tokio::sync::oneshot::channel::<()>();
        let drain = async move {
            shutdown.await;
            tracing::info!(
                grace_secs = grace.as_secs_f64(),
                active_runs = engine.active_runs(),
                "shutting down: no new runs, draining"
            );
            {
                let mut shutting_down = shutting_down.lock().await;
                *shutting_down = true;
                set_health(&health, ServingStatus::NotServing).await;
            }
            let cancelled = engine.drain(grace).await;
            // No tool process outlives the server: stop and reap every process group left.
            crate::tools::processes::stop_all(grace).await;
            tracing::info!(cancelled, "all runs ended; closing connections");
            let _ = drained_tx.send(());
        };

        let serve = tonic::transport::Server::builder()
            // Windows: 1 MiB per stream and 16 MiB per connection let a fast tool stream without
            // waiting for window updates, while the per-run queue (not h2) bounds memory.
            .initial_stream_window_size(1024 * 1024)
            .initial_connection_window_size(16 * 1024 * 1024)
            .max_concurrent_streams(limits.max_concurrent_streams)
            // Keepalive pings find dead peers (a vanished client must not hold a run forever).
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // Clients that open many streams and reset them quickly are normal here (cancel).
            .http2_max_pending_accept_reset_streams(Some(1024))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(tools)
            .add_service(runs)
            .serve_with_incoming_shutdown(incoming, drain);
        // Graceful close waits for every stream to drain, which a client that stopped reading
        // never lets happen: once the runs ended, connections get CLOSE_TIMEOUT, then are dropped.
        let close_deadline = async {
            if drained.await.is_err() {
                return std::future::pending().await;
            }
            tokio::time::sleep(CLOSE_TIMEOUT).await;
        };
        tokio::select! {
            served = serve => served?,
            () = close_deadline => {
                tracing::warn!(
                    timeout_secs = CLOSE_TIMEOUT.as_secs(),
                    "connections did not close in time (a client stopped reading); closing them"
                );
            }
        }
        Ok(())
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Health follows the run store: NOT_SERVING while it cannot be reached, SERVING again when it
/// can, until shutdown begins.
async fn follow_store_health(
    mut store: tokio::sync::watch::Receiver<bool>,
    health: HealthReporter,
    shutting_down: Arc<tokio::sync::Mutex<bool>>,
) {
    loop {
        let reachable = *store.borrow_and_update();
        {
            let shutting_down = shutting_down.lock().await;
            if *shutting_down {
                return;
            }
            let status = if reachable {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&health, status).await;
        }
        if store.changed().await.is_err() {
            return;
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("received SIGINT"),
        _ = terminate => tracing::info!("received SIGTERM"),
    }
}
