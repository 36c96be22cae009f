//! The web face of the engine, on the gRPC port: JSON routes, runs as server-sent events, a
//! WebSocket carrying many runs, and a page that uses them. A browser needs no proxy and no
//! build step.
//!
//! Like [`crate::transport`], this is a thin adapter over the operations
//! ([`crate::operations`]): requests are read as the contract's own messages (canonical proto3
//! JSON, [`crate::json_proto`]), turned into the operations' requests with the same conversions
//! the gRPC services use, and a run's [`EventStream`](crate::engine::EventStream)
//! is adapted at the edge ([`sse`], [`ws`]), read lazily so that a slow HTTP reader gets progress
//! coalesced exactly like a slow gRPC reader. Each event's JSON is made once, however many read it.
//!
//! - [`routes`]: the JSON routes, `/healthz`, `/metrics`, and the fallbacks.
//! - [`sse`]: a run's events as an SSE response.
//! - [`ws`]: the `/v1/ws` protocol.
//! - [`page`]: `GET /` and the run view `GET /runs/{id}`, plain HTML and JavaScript embedded in
//!   the binary.
//! - [`error`]: `{"code", "message"}` and the HTTP status of each gRPC code.
//! - [`credentials`]: the auth layer: who calls (bearer token, `access_token`, client
//!   certificate), UNAUTHENTICATED without it, the [`Caller`] for the operations.
//! - [`origin`]: which pages may make a browser send state-changing requests and open the
//!   WebSocket (cross-site request forgery).
//!
//! [`router`] puts them beside the gRPC services (each wrapped for gRPC-Web) in one router, with
//! the origin check around them and CORS outside everything when origins are configured.

mod credentials;
mod error;
mod events;
mod origin;
mod page;
mod routes;
mod sse;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{get, post};
use tonic_health::server::HealthService;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::auth::{Authenticator, Caller};
use crate::config::HttpConfig;
use crate::listener::Sessions;
use crate::operations::Operations;
use crate::telemetry::metrics::Metrics;

pub(crate) use error::ApiError;

/// What every handler reaches.
#[derive(Clone)]
pub(crate) struct WebState {
    /// What every route does, through one call each.
    pub(crate) operations: Arc<Operations>,
    /// The same statuses `grpc.health.v1.Health` reports.
    pub(crate) health: Arc<HealthService>,
    pub(crate) http: Arc<HttpConfig>,
    /// The largest request body or WebSocket message read.
    pub(crate) max_message_bytes: usize,
    pub(crate) sessions: Sessions,
    /// What `GET /metrics` renders.
    pub(crate) metrics: Arc<Metrics>,
}

/// The [`Caller`], as the authentication layer recorded it (anonymous when it recorded none,
/// which only happens with auth off).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The whole application: `grpc` (the gRPC services' router) with the web routes beside it, the
/// auth layer around both (`credentials`), the origin check around that (a cross-site
/// request is refused before its credentials are looked at), and CORS outside it when
/// `[http] cors_origins` names any (a preflight carries no credentials and changes nothing).
pub(crate) fn router(grpc: Router, state: WebState, auth: Arc<Authenticator>) -> Router {
    let cors = cors_layer(&state.http.cors_origins);
    let origins = Arc::new(origin::AllowedOrigins::new(&state.http.cors_origins));
    let mut web = Router::new();
    if state.http.mcp.enabled {
        // Beside the other routes, inside the same auth layer and origin check.
        web = web.nest_service(
            "/mcp",
            crate::mcp::http::service(
                Arc::clone(&state.operations),
                Arc::clone(&state.metrics),
                &state.http.mcp,
                state.max_message_bytes,
            ),
        );
    }
    let web = web
        .route("/", get(page::index))
        // The run view: the same page, which reads the run's id from its address.
        .route("/runs/{id}", get(page::index))
        .route("/assets/{file}", get(page::asset))
        .route("/healthz", get(routes::healthz))
        // Prometheus text, beside `/healthz`: a plain route on this router; the auth layer
        // leaves it open.
        .route("/metrics", get(routes::metrics))
        .route("/v1/tools", get(routes::list_tools))
        // A JSON body that stalls is given up after `body_timeout` between two chunks (408);
        // only these two routes read a body, and no response stream is ever timed.
        .route(
            "/v1/tools/{name}/runs",
            post(routes::run_tool).layer(RequestBodyTimeoutLayer::new(state.http.body_timeout)),
        )
        .route(
            "/v1/agent/runs",
            post(routes::run_agent).layer(RequestBodyTimeoutLayer::new(state.http.body_timeout)),
        )
        .route("/v1/runs", get(routes::list_runs))
        .route("/v1/runs/{id}", get(routes::get_run))
        .route("/v1/runs/{id}/events", get(routes::run_events))
        .route("/v1/runs/{id}/cancel", post(routes::cancel_run))
        .route(
            "/v1/runs/{id}/inputs/{request_id}",
            post(routes::respond_to_run)
                .layer(RequestBodyTimeoutLayer::new(state.http.body_timeout)),
        )
        .route("/v1/ws", get(ws::upgrade))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_message_bytes))
        .with_state(state);
    // The gRPC router has a fallback (UNIMPLEMENTED) and the web one none, so they merge; the
    // fallback is then replaced by one that answers gRPC and HTTP clients each in their terms.
    let app = grpc
        .merge(web)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            auth,
            credentials::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            origins,
            origin::check_origin,
        ));
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// CORS for the configured origins (`"*"` allows any), or none: same-origin only by default.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        // Config validation made sure each one is a valid header value.
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            // DELETE: an MCP client ending its session.
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::AUTHORIZATION,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("x-grpc-web"),
                HeaderName::from_static("x-user-agent"),
                HeaderName::from_static("grpc-timeout"),
                HeaderName::from_static("mcp-session-id"),
                HeaderName::from_static("mcp-protocol-version"),
            ])
            // gRPC-Web clients read the status from these; the run id is in x-run-id.
            .expose_headers([
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("grpc-message"),
                HeaderName::from_static("grpc-status-details-bin"),
                HeaderName::from_static("x-run-id"),
                HeaderName::from_static("mcp-session-id"),
                header::LOCATION,
            ])
            .max_age(std::time::Duration::from_secs(24 * 3600)),
    )
}
