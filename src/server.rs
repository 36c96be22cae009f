//! The listening server: the gRPC services with health and reflection beside them, gRPC-Web and
//! the web routes on the same port, HTTP/2 and TCP settings chosen on purpose, and graceful
//! shutdown.
//!
//! Shutdown: when the shutdown signal fires, health turns NOT_SERVING (so load balancers and
//! Kubernetes stop sending work; `/healthz` answers 503), the engine refuses new runs with
//! UNAVAILABLE, runs in progress get the grace period to finish, the rest are cancelled, and then
//! connections are closed (WebSockets with a close frame).
//!
//! Health also follows the run store: NOT_SERVING while a shared store cannot be reached.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_web::GrpcWebLayer;
use tower::Layer;

use crate::agent::openai::OpenAiProvider;
use crate::agent::{
    Agent, AgentSettings, DEFAULT_MAX_PARALLEL_CALLS, DEFAULT_MAX_STEPS, ModelProvider,
};
use crate::auth::{AuthConfig, Authenticator};
use crate::config::{HttpConfig, Limits, ModelConfig};
use crate::configured_tools::BuildError;
use crate::engine::{Engine, RunObserver, Store};
use crate::listener::{self, Sessions};
use crate::operations::Operations;
use crate::pb;
use crate::pb::encoded::run_service_server::RunServiceServer;
use crate::pb::encoded::tool_service_server::ToolServiceServer;
use crate::registry::ToolRegistry;
use crate::telemetry::grpc::GrpcMetricsLayer;
use crate::telemetry::metrics::Metrics;
use crate::tls::ServerTls;
use crate::traces::TraceContextLayer;
use crate::transport::{RunServiceImpl, ToolServiceImpl};
use crate::web::{self, WebState};
use crate::webhooks::{Deliveries, Webhooks};

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
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The transport failed.
    #[error("server error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A server ready to serve: the engine and the limits it runs with.
pub struct Server {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    /// What the engine tells of its runs: the metrics, wrapped by the webhooks when configured.
    observer: Arc<dyn RunObserver>,
    /// Where the engine keeps its runs.
    store: Store,
    /// The webhooks the engine's observer queues, sent once serving.
    deliveries: Option<Deliveries>,
    limits: Limits,
    agent: AgentSettings,
    /// Tools whose agent calls always need approval (`[model] approval_required`).
    approval_required: Vec<String>,
    http: HttpConfig,
    tls: Option<Arc<ServerTls>>,
    auth: AuthConfig,
}

impl Server {
    /// A server running the tools of `registry`.
    pub fn new(registry: ToolRegistry, limits: Limits) -> Self {
        let metrics = Arc::new(Metrics::new());
        let store = Store::memory(&limits);
        let engine =
            Engine::with_observer(Arc::new(registry), limits, store.clone(), metrics.clone());
        Server {
            engine,
            observer: metrics.clone(),
            metrics,
            store,
            deliveries: None,
            limits,
            agent: AgentSettings::default(),
            approval_required: Vec::new(),
            http: HttpConfig::default(),
            tls: None,
            auth: AuthConfig::default(),
        }
    }

    /// Serves every protocol over TLS with `tls` (its files are watched for new certificates
    /// while the server runs).
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(Arc::new(tls));
        self
    }

    /// Requires credentials as `auth` says (off unless it names tokens or client certificates).
    pub fn with_auth(mut self, auth: AuthConfig) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the HTTP side: CORS origins, keep-alives, WebSocket bounds.
    pub fn with_http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// Keeps runs in `store` (the in-memory store otherwise).
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = store;
        self.rebuild_engine();
        self
    }

    /// Sends `webhooks` when runs end (none are configured otherwise).
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        if webhooks.is_empty() {
            return self;
        }
        let (observer, deliveries) = webhooks.observe(self.metrics.clone(), self.metrics.clone());
        self.observer = observer;
        self.deliveries = Some(deliveries);
        self.rebuild_engine();
        self
    }

    /// A new engine over the same tools with the current store and observer.
    fn rebuild_engine(&mut self) {
        self.engine = Engine::with_observer(
            Arc::clone(self.engine.registry()),
            self.limits,
            self.store.clone(),
            Arc::clone(&self.observer),
        );
    }

    /// Lets RunAgent use the model `config` describes (no URL: RunAgent stays unavailable).
    pub fn with_model(self, config: &ModelConfig) -> Result<Self, ServeError> {
        let provider: Option<Arc<dyn ModelProvider>> = match &config.url {
            Some(url) => Some(Arc::new(OpenAiProvider::new(url, config.api_key.clone())?)),
            None => None,
        };
        let server = self.with_approval_required(config.approval_required.clone());
        Ok(server.with_agent(AgentSettings {
            provider,
            default_model: config.name.clone(),
            default_max_steps: config.max_steps.unwrap_or(DEFAULT_MAX_STEPS),
            max_parallel_calls: config
                .max_parallel_calls
                .unwrap_or(DEFAULT_MAX_PARALLEL_CALLS),
        }))
    }

    /// Agent runs ask a person to approve every call of these tools first (`"*"`: every tool),
    /// besides those a request names.
    pub fn with_approval_required(mut self, tools: Vec<String>) -> Self {
        self.approval_required = tools;
        self
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
    ///
    /// One listener serves gRPC (h2c), gRPC-Web (ToolService, RunService and health) and the web
    /// routes over HTTP/1.1 and HTTP/2 (`crate::web`); see `crate::listener` for the
    /// connection settings and how connections close.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            engine,
            metrics,
            observer: _,
            store,
            deliveries,
            limits,
            agent,
            approval_required,
            http,
            tls,
            auth,
        } = self;
        warn_if_exposed(&listener, tls.is_some(), &auth);
        if let Some(deliveries) = deliveries {
            deliveries.start(store.shared_redis()).await;
        }
        if let Some(tls) = &tls {
            ServerTls::keep_current(tls);
        }
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

        let agent = Arc::new(
            Agent::new(Arc::clone(&engine), agent).with_approval_required(approval_required),
        );
        let operations = Arc::new(Operations::new(agent));
        let runs = RunServiceServer::new(RunServiceImpl::new(Arc::clone(&operations)))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
        let tools = ToolServiceServer::new(ToolServiceImpl::new(Arc::clone(&operations)))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);

        // gRPC-Web wraps each service it serves, never the whole router: it answers 400 to any
        // HTTP/1.1 request that is not gRPC-Web, which would shadow the web routes. The metrics
        // layer sits inside it, so gRPC-Web calls are counted as the gRPC calls they become.
        let metered = GrpcMetricsLayer::new(Arc::clone(metrics.grpc()));
        let grpc = Routes::new(GrpcWebLayer::new().layer(metered.layer(health_service)))
            .add_service(metered.layer(reflection_v1))
            .add_service(metered.layer(reflection_v1alpha))
            .add_service(GrpcWebLayer::new().layer(metered.layer(tools)))
            .add_service(GrpcWebLayer::new().layer(metered.layer(runs)))
            .prepare()
            .into_axum_router();
        let sessions = Sessions::default();
        let http = Arc::new(http);
        let app = web::router(
            grpc,
            WebState {
                operations,
                health: Arc::new(HealthService::from_health_reporter(health.clone())),
                http: Arc::clone(&http),
                max_message_bytes: limits.max_message_bytes,
                sessions: sessions.clone(),
                metrics,
            },
            Arc::new(Authenticator::new(auth)),
        )
        // Outside everything: every request (gRPC, gRPC-Web, HTTP, SSE, WebSocket upgrades) joins
        // its caller's trace when traces are on.
        .layer(TraceContextLayer);

        // Progress is many small messages: Nagle's algorithm would hold them back.
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));

        let grace = limits.grace_period;
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
            // Every run ends here, so every stream of one (gRPC, SSE, WebSocket) ends with it.
            let cancelled = engine.drain(grace).await;
            // No tool process outlives the server: stop and reap every process group left.
            crate::tools::processes::stop_all(grace).await;
            tracing::info!(cancelled, "all runs ended; closing connections");
        };

        // Graceful close waits for every stream to drain, which a client that stopped reading
        // never lets happen: once the runs ended, connections get CLOSE_TIMEOUT, then are dropped.
        listener::serve(incoming, tls, app, &http, sessions, drain, CLOSE_TIMEOUT).await;
        Ok(())
    }
}

/// Logs a warning when the server is reachable from other machines without auth (anyone can run
/// every tool) or with tokens but without TLS (tokens cross the network in clear).
fn warn_if_exposed(listener: &TcpListener, tls: bool, auth: &AuthConfig) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    if addr.ip().is_loopback() {
        return;
    }
    if !auth.is_enabled() {
        tracing::warn!(
            listen = %addr,
            "auth is off and the server listens beyond loopback: anyone who can reach {addr} can \
             run every tool and see every run; configure [[auth.tokens]] (docs/operations.md)"
        );
    } else if !tls {
        tracing::warn!(
            listen = %addr,
            "auth is on but TLS is off: bearer tokens cross the network in clear; set \
             --tls-cert and --tls-key"
        );
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
