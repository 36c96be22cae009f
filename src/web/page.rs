//! `GET /`: a page that lists the tools with forms made from their input schemas, runs them with
//! live progress (each run's tree of calls and sub-tasks with their ETAs; agent runs with their
//! streamed text and each call's arguments and result), lists runs with their state, duration
//! and error, with resume and cancel, and shows errors. `GET /runs/{id}` is the same page showing
//! one run (linkable): what it was called with, its facts, its live tree, its result or error. Plain HTML, CSS and JavaScript, embedded in the
//! binary: no build step, no proxy, nothing fetched from elsewhere. It uses only the public
//! routes (`/v1/tools`, `/v1/runs…`, and one WebSocket, `/v1/ws`, for every run it starts or
//! follows), so it doubles as their example.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

/// `GET /` and `GET /runs/{id}` (the script tells them apart by the address).
pub(super) async fn index() -> Response {
    asset_response("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /assets/{file}`: the page's script and style sheet.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => asset_response("text/javascript; charset=utf-8", APP_JS),
        "app.css" => asset_response("text/css; charset=utf-8", APP_CSS),
        _ => ApiError::new(tonic::Code::NotFound, format!("no asset {file:?}")).into_response(),
    }
}

fn asset_response(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The page changes with the binary: revalidate rather than serve a stale copy.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}
