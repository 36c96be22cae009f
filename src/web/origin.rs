//! Cross-site requests: what a page on another site may make a browser do here.
//!
//! A browser attaches ambient credentials to a request whatever page asks for it: a client
//! certificate (`[auth] principal_from_client_cert`), or nothing at all when auth is off and the
//! server listens on the user's own machine. The same-origin policy stops such a page from
//! *reading* the answers, but not from *sending* a `POST` (a form, or `fetch` with `no-cors`), and
//! not from opening a WebSocket, which CORS does not cover. So every request that changes state
//! (any method but `GET`, `HEAD` and `OPTIONS`) and every upgrade (the WebSocket) must come from
//! no browser at all (no `Origin` header: curl, gRPC clients, servers), from this server's own
//! origin (the `Origin`'s host and port are the request's `Host`), or from an origin listed in
//! `[http] cors_origins` (`"*"`: any). Anything else is refused with 403 before it reaches auth
//! or a handler (RFC 6455 §10.2 for the WebSocket).
//!
//! Bearer tokens are not ambient (a page has to hold one to send it), but the rule is the same
//! for every request: one rule is easier to reason about than one per credential.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tonic::Code;

use super::ApiError;

/// The origins besides the server's own that may send state-changing requests.
#[derive(Debug, Clone)]
pub(crate) struct AllowedOrigins {
    /// `cors_origins` holds `"*"`.
    any: bool,
    /// The listed origins, lowercased.
    listed: Vec<String>,
}

impl AllowedOrigins {
    /// From `[http] cors_origins`.
    pub(crate) fn new(cors_origins: &[String]) -> Self {
        AllowedOrigins {
            any: cors_origins.iter().any(|origin| origin == "*"),
            listed: cors_origins
                .iter()
                .map(|origin| origin.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a request from `origin` to `host` (the request's `Host`, or its URI's authority
    /// over HTTP/2) may go on.
    fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        if self.any || self.listed.contains(&origin) {
            return true;
        }
        // `null` (a sandboxed frame, a file) has no host and never matches.
        let Some((_scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        host.is_some_and(|host| host.trim().eq_ignore_ascii_case(authority))
    }
}

/// Whether `request` changes state or upgrades the connection: the requests a page on another
/// site must not make a browser send.
fn needs_same_origin(request: &Request) -> bool {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    !safe || request.headers().contains_key(header::UPGRADE)
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub(crate) async fn check_origin(
    State(allowed): State<Arc<AllowedOrigins>>,
    request: Request,
    next: Next,
) -> Response {
    if !needs_same_origin(&request) {
        return next.run(request).await;
    }
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        // Not a browser.
        return next.run(request).await;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.as_str())
        });
    let origin = origin.to_str().unwrap_or("");
    if allowed.allows(origin, host) {
        return next.run(request).await;
    }
    tracing::debug!(
        origin,
        method = %request.method(),
        path = request.uri().path(),
        "cross-site request refused"
    );
    ApiError::new(
        Code::PermissionDenied,
        format!(
            "a page from {} may not send {} {} here: only this server's own origin and the \
             origins in [http] cors_origins may (requests without an Origin header, from \
             non-browser clients, are not affected)",
            quoted(origin),
            request.method(),
            request.uri().path()
        ),
    )
    .for_client(request.headers())
}

/// `origin` for a message, quoted; an unreadable one said as such.
fn quoted(origin: &str) -> String {
    if origin.is_empty() {
        "an unreadable Origin".to_owned()
    } else {
        format!("{origin:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_listed_and_any_are_allowed_others_not() {
        let none = AllowedOrigins::new(&[]);
        let same = "https://Tools.Example:8443";
        assert!(none.allows(same, Some("tools.example:8443")));
        assert!(!none.allows(same, Some("tools.example")));
        assert!(!none.allows("https://evil.example", Some("tools.example:8443")));
        assert!(!none.allows("null", Some("tools.example:8443")));
        assert!(!none.allows("https://evil.example", None));

        let listed = AllowedOrigins::new(&["https://App.example.com".to_owned()]);
        assert!(listed.allows("https://app.example.com", Some("tools.example")));
        assert!(!listed.allows("http://app.example.com", Some("tools.example")));

        let any = AllowedOrigins::new(&["*".to_owned()]);
        assert!(any.allows("https://evil.example", Some("tools.example")));
    }
}
