//! The auth layer around the whole router (the HTTP side of [`crate::auth`]): finds the caller's credentials, answers
//! UNAUTHENTICATED without valid ones (in gRPC terms to gRPC and gRPC-Web clients, HTTP 401 with
//! the JSON error body to others), and records the [`Caller`] for the operations.
//!
//! Credentials, in order: the `authorization: Bearer <token>` header; for `GET` requests only
//! (what `EventSource` and a browser's WebSocket can send), an `access_token` query parameter;
//! then, with `[auth] principal_from_client_cert`, the subject CN of the connection's verified
//! client certificate. A token that is given but wrong is refused even when a certificate would
//! do. `access_token` is taken out of the URI before anything else sees it (handlers, errors,
//! logs).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use tonic::Code;

use super::ApiError;
use crate::auth::{Authenticator, Caller};
use crate::tls::ClientCertName;

/// The query parameter a browser may carry its token in when it cannot set a header.
const TOKEN_PARAMETER: &str = "access_token";

/// Paths served to anyone: health (gRPC and `/healthz`), reflection, metrics, and the page with
/// its assets and its run view `/runs/{id}` (it asks for the token itself; the run comes from
/// `/v1/runs/{id}`, which needs one).
fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.")
        || path.starts_with("/assets/")
        || path.starts_with("/runs/")
        || matches!(path, "/" | "/healthz" | "/metrics")
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub(crate) async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let from_query = take_query_token(&mut request);
    if !auth.is_enabled() || is_open(request.uri().path()) {
        request.extensions_mut().insert(Caller::Anonymous);
        return next.run(request).await;
    }
    let header_token = match request.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match bearer(value) {
            Some(token) => Some(token.to_owned()),
            None => {
                return unauthenticated(
                    &request,
                    "the authorization header is not `Bearer <token>`",
                );
            }
        },
    };
    let query_token = from_query.filter(|_| request.method() == axum::http::Method::GET);
    let principal = match header_token.or(query_token) {
        Some(token) => match auth.by_token(&token) {
            Some(principal) => principal,
            None => return unauthenticated(&request, "the bearer token is not valid"),
        },
        None => {
            let by_cert = request
                .extensions()
                .get::<ClientCertName>()
                .and_then(|name| auth.by_client_cert(&name.0));
            match by_cert {
                Some(principal) => principal,
                None => {
                    return unauthenticated(
                        &request,
                        "this server needs credentials: send `authorization: Bearer <token>`",
                    );
                }
            }
        }
    };
    request
        .extensions_mut()
        .insert(Caller::Principal(principal));
    next.run(request).await
}

/// The token of an `authorization: Bearer <token>` header (the scheme in any case).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Removes `access_token` from the request's query, returning its value.
fn take_query_token(request: &mut Request) -> Option<String> {
    let query = request.uri().query()?;
    if !query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(TOKEN_PARAMETER))
    {
        return None;
    }
    let mut token = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((TOKEN_PARAMETER, value)) => {
                token = Some(percent_decode(value));
            }
            _ if pair == TOKEN_PARAMETER => {}
            _ => kept.push(pair),
        }
    }
    let path = request.uri().path();
    let path_and_query = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    token
}

/// `%XX` escapes and `+` decoded (tokens are usually URL-safe already).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// UNAUTHENTICATED in the caller's terms: a gRPC status (trailers-only) for gRPC and gRPC-Web,
/// HTTP 401 with the JSON error body otherwise; `WWW-Authenticate: Bearer` either way.
fn unauthenticated(request: &Request, message: &str) -> Response {
    let mut response = ApiError::new(Code::Unauthenticated, message).for_client(request.headers());
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_token_is_taken_out_of_the_uri() {
        let mut request = Request::builder()
            .uri("/v1/runs/x/events?after=3&access_token=s%2Bcret&from=latest")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(take_query_token(&mut request).as_deref(), Some("s+cret"));
        assert_eq!(
            request.uri().to_string(),
            "/v1/runs/x/events?after=3&from=latest"
        );
        let mut request = Request::builder()
            .uri("/v1/ws?access_token=abc")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(take_query_token(&mut request).as_deref(), Some("abc"));
        assert_eq!(request.uri().to_string(), "/v1/ws");
    }

    #[test]
    fn bearer_headers_are_read_in_any_case() {
        let value = |text: &str| HeaderValue::from_str(text).unwrap();
        assert_eq!(bearer(&value("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&value("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&value("Basic abc")), None);
        assert_eq!(bearer(&value("Bearer ")), None);
    }
}
