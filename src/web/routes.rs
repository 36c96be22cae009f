//! The JSON routes (DESIGN.md, "Web delivery"). Requests are the contract's messages in canonical
//! proto3 JSON; unary answers are exactly what the gRPC services answer, in the same JSON; runs
//! stream as SSE ([`super::sse`]) or, with `Accept: application/json`, start detached.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use prost_reflect::ReflectMessage;
use serde_json::{Map, Value};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;

use super::WebState;
use super::error::ApiError;
use super::sse::sse_response;
use crate::auth::Caller;
use crate::engine::{ReadFrom, RunHandle};
use crate::json_proto::{from_json, from_json_value, to_json};
use crate::operations::WatchRequest;
use crate::pb;
use crate::registry::SourceHealth;
use crate::transport::convert::{
    agent_request, reply, run_options, tool_run_request, tools_to_wire,
};
use crate::transport::{deadline_from_grpc_timeout, page_to_wire, run_filter, run_to_wire};

/// `message` as a JSON response.
fn json_response<M: ReflectMessage>(status: StatusCode, message: &M) -> Response {
    match to_json(message) {
        Ok(json) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// Whether `content_type` is JSON (`application/json`, parameters allowed).
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(content_type) = content_type.to_str() else {
        return false;
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

/// A request body: the message's JSON (`Content-Type: application/json`), or nothing (and no
/// content type) for its defaults. Any other content type is a 415: a page on another site can
/// make a browser send `text/plain` or a form without asking, but never `application/json`
/// (`crate::web::origin` says why that matters).
fn read_body<M: ReflectMessage + Default>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<M, ApiError> {
    let body = body.map_err(|rejection| {
        if timed_out(&rejection) {
            return ApiError::new(
                Code::DeadlineExceeded,
                "the request body stalled longer than [http] body_timeout_ms; send the whole \
                 body at once",
            )
            .with_status(StatusCode::REQUEST_TIMEOUT);
        }
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            Code::OutOfRange
        } else {
            Code::InvalidArgument
        };
        ApiError::new(code, rejection.body_text()).with_status(status)
    })?;
    let content_type = headers.get(header::CONTENT_TYPE);
    match content_type {
        Some(content_type) if is_json(content_type) => {}
        None if body.is_empty() => return Ok(M::default()),
        _ => {
            let given = content_type.map_or_else(
                || "none".to_owned(),
                |value| format!("{:?}", value.to_str().unwrap_or("unreadable")),
            );
            return Err(ApiError::invalid_argument(format!(
                "this route takes a JSON body: send it with `Content-Type: application/json` \
                 (the request's content type is {given})"
            ))
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(M::default());
    }
    Ok(from_json(&body)?)
}

/// Whether reading the body failed because it stalled past the body timeout.
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut error: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(current) = error {
        if current.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        error = current.source();
    }
    false
}

/// Query parameters as a list; a malformed query is a 400.
fn read_query(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|rejection| ApiError::invalid_argument(rejection.body_text()))
}

/// The deadline an HTTP client set with a `grpc-timeout` header, as gRPC clients do (400 for a
/// malformed one).
fn deadline(headers: &HeaderMap) -> Result<Option<std::time::Duration>, ApiError> {
    Ok(deadline_from_grpc_timeout(
        headers.get("grpc-timeout").map(HeaderValue::as_bytes),
    )?)
}

/// Whether the client asked for the `Run` (start detached) rather than the event stream.
fn wants_run(headers: &HeaderMap) -> bool {
    let mut json = false;
    for accept in headers.get_all(header::ACCEPT) {
        let Ok(accept) = accept.to_str() else {
            continue;
        };
        for range in accept.split(',') {
            let media = range.split(';').next().unwrap_or("").trim();
            if media.eq_ignore_ascii_case("text/event-stream") {
                return false;
            }
            json |= media.eq_ignore_ascii_case("application/json");
        }
    }
    json
}

/// The response to a started run: its events as SSE, or (detached) the `Run` with 202.
/// (The operations answer once the run is recorded in the run store.)
async fn started(
    state: &WebState,
    caller: &Caller,
    handle: RunHandle,
    detached: bool,
) -> Result<Response, ApiError> {
    let RunHandle { run_id, events, .. } = handle;
    if !detached {
        return Ok(sse_response(&run_id, events, state.http.keep_alive));
    }
    // Started with ON_DISCONNECT_CONTINUE: dropping the stream leaves the run going.
    drop(events);
    let run = state.operations.get_run(caller, &run_id).await?;
    let mut response = json_response(StatusCode::ACCEPTED, &run_to_wire(run));
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/runs/{run_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Ok(value) = HeaderValue::from_str(&run_id) {
        response.headers_mut().insert("x-run-id", value);
    }
    Ok(response)
}

/// The `Idempotency-Key` header of `POST .../runs`, into the request's options (where the body
/// may carry the same key; a different one is refused).
fn idempotency_header(
    headers: &HeaderMap,
    options: &mut Option<pb::RunOptions>,
) -> Result<(), ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(());
    };
    let key = value.to_str().map_err(|_| {
        ApiError::invalid_argument("the Idempotency-Key header is not visible ASCII text")
    })?;
    let options = options.get_or_insert_with(pb::RunOptions::default);
    if !options.idempotency_key.is_empty() && options.idempotency_key != key {
        return Err(ApiError::invalid_argument(format!(
            "the Idempotency-Key header {key:?} differs from options.idempotencyKey {:?}; send one",
            options.idempotency_key
        )));
    }
    options.idempotency_key = key.to_owned();
    Ok(())
}

fn detach(options: &mut Option<pb::RunOptions>) {
    options
        .get_or_insert_with(pb::RunOptions::default)
        .set_on_disconnect(pb::OnDisconnect::Continue);
}

/// `GET /v1/tools`: ListToolsResponse.
pub(super) async fn list_tools(State(state): State<WebState>, caller: Caller) -> Response {
    let tools = tools_to_wire(state.operations.list_tools(&caller));
    json_response(StatusCode::OK, &tools)
}

/// `POST /v1/tools/{name}/runs`, body `{"arguments": {...}, "options": {...}}`.
pub(super) async fn run_tool(
    State(state): State<WebState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut request: pb::RunToolRequest = read_body(&headers, body)?;
    if !request.tool.is_empty() && request.tool != name {
        return Err(ApiError::invalid_argument(format!(
            "the body names tool {:?} but the path names {name:?}; leave `tool` out of the body",
            request.tool
        )));
    }
    request.tool = name;
    idempotency_header(&headers, &mut request.options)?;
    let detached = wants_run(&headers);
    if detached {
        detach(&mut request.options);
    }
    let handle = state
        .operations
        .run_tool(&caller, tool_run_request(request, deadline(&headers)?))
        .await?;
    started(&state, &caller, handle, detached).await
}

/// `POST /v1/agent/runs`, body `{"prompt", "tools", "model", "maxSteps", "systemPrompt",
/// "options"}`.
pub(super) async fn run_agent(
    State(state): State<WebState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut request: pb::RunAgentRequest = read_body(&headers, body)?;
    idempotency_header(&headers, &mut request.options)?;
    let detached = wants_run(&headers);
    if detached {
        detach(&mut request.options);
    }
    let handle = state
        .operations
        .run_agent(&caller, agent_request(request, deadline(&headers)?))
        .await?;
    started(&state, &caller, handle, detached).await
}

/// `GET /v1/runs?state=&tool=&pageSize=&pageToken=&label=`: ListRunsResponse. `state` takes the
/// enum's name (`RUN_STATE_RUNNING`), its short form (`running`) or its number; `label=key:value`,
/// repeated, asks for runs carrying every such label.
pub(super) async fn list_runs(
    State(state): State<WebState>,
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut fields = Map::new();
    let mut labels = Map::new();
    for (key, value) in read_query(query)? {
        if key == "label" {
            let Some((name, label)) = value.split_once(':') else {
                return Err(ApiError::invalid_argument(format!(
                    "label={value:?}: write label=key:value"
                )));
            };
            let previous = labels.insert(name.to_owned(), Value::String(label.to_owned()));
            if previous.is_some_and(|previous| previous != label) {
                return Err(ApiError::invalid_argument(format!(
                    "label {name:?} is asked for with two values; a run has one value per label"
                )));
            }
            continue;
        }
        let value = if key == "state" && !value.is_empty() && !value.starts_with("RUN_STATE_") {
            if value.bytes().all(|b| b.is_ascii_digit()) {
                value
            } else {
                format!("RUN_STATE_{}", value.to_ascii_uppercase())
            }
        } else {
            value
        };
        if value.is_empty() {
            continue;
        }
        fields.insert(key, Value::String(value));
    }
    if !labels.is_empty() {
        fields.insert("labels".to_owned(), Value::Object(labels));
    }
    let request: pb::ListRunsRequest = from_json_value(Value::Object(fields))?;
    let page = state
        .operations
        .list_runs(&caller, run_filter(request))
        .await?;
    Ok(json_response(StatusCode::OK, &page_to_wire(page)))
}

/// `GET /v1/runs/{id}`: Run.
pub(super) async fn get_run(
    State(state): State<WebState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    let run = state.operations.get_run(&caller, &run_id).await?;
    Ok(json_response(StatusCode::OK, &run_to_wire(run)))
}

/// `POST /v1/runs/{id}/cancel`: CancelRun, answers the Run.
pub(super) async fn cancel_run(
    State(state): State<WebState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    let run = state.operations.cancel_run(&caller, &run_id).await?;
    Ok(json_response(StatusCode::OK, &run_to_wire(run)))
}

/// `POST /v1/runs/{id}/inputs/{request_id}` with `{"value": ...}` or `{"decline": true}`:
/// RespondToRun, answers the Run.
pub(super) async fn respond_to_run(
    State(state): State<WebState>,
    caller: Caller,
    Path((run_id, request_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut request: pb::RespondToRunRequest = read_body(&headers, body)?;
    request.run_id = run_id;
    request.request_id = request_id;
    let run = state
        .operations
        .respond(
            &caller,
            &request.run_id,
            &request.request_id,
            reply(&request),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &run_to_wire(run)))
}

/// `GET /v1/runs/{id}/events`: WatchRun as SSE. Where to start: the `Last-Event-ID` header (a
/// reconnecting `EventSource` sends it), else `?from=latest`, else `?after=N` (0: from the
/// start). `?minProgressIntervalMs=` and `?heartbeatIntervalMs=` are the watcher's options.
pub(super) async fn run_events(
    State(state): State<WebState>,
    caller: Caller,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut from = ReadFrom::After(0);
    let mut options = pb::RunOptions::default();
    let number = |key: &str, value: &str| {
        value.parse::<u64>().map_err(|_| {
            ApiError::invalid_argument(format!("{key}={value:?} is not a non-negative integer"))
        })
    };
    let millis =
        |key: &str, value: &str| number(key, value).map(|ms| u32::try_from(ms).unwrap_or(u32::MAX));
    for (key, value) in read_query(query)? {
        match key.as_str() {
            "after" => from = ReadFrom::After(number("after", &value)?),
            "from" if value == "latest" => from = ReadFrom::Latest,
            "from" if value == "start" => from = ReadFrom::After(0),
            "from" => {
                return Err(ApiError::invalid_argument(format!(
                    "from={value:?}: use from=latest (or from=start)"
                )));
            }
            "minProgressIntervalMs" | "min_progress_interval_ms" => {
                options.min_progress_interval_ms = millis(&key, &value)?;
            }
            "heartbeatIntervalMs" | "heartbeat_interval_ms" => {
                options.heartbeat_interval_ms = millis(&key, &value)?;
            }
            _ => {
                return Err(ApiError::invalid_argument(format!(
                    "unknown query parameter {key:?}; this route takes after, from, \
                     minProgressIntervalMs and heartbeatIntervalMs"
                )));
            }
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let last = last.to_str().unwrap_or("").trim();
        from = ReadFrom::After(number("Last-Event-ID", last)?);
    }
    // A watcher leaving never affects the run.
    let request = WatchRequest {
        run_id,
        from,
        options: run_options(Some(options)),
    };
    let events = state.operations.watch_run(&caller, &request).await?;
    Ok(sse_response(&request.run_id, events, state.http.keep_alive))
}

/// The body of `/healthz`: `{"status": "SERVING"}`, plus `"sources"` when there are remote ones.
fn health_body(status: ServingStatus, sources: Vec<SourceHealth>) -> Value {
    let mut body = serde_json::json!({"status": status.as_str_name()});
    if !sources.is_empty() {
        body["sources"] = serde_json::json!(sources);
    }
    body
}

/// `GET /healthz`: 200 while the server is SERVING, 503 otherwise (the gRPC health status of
/// the server as a whole). With remote tool sources configured, `sources` says for each whether
/// it could be listed (a remote that is down does not make the server unhealthy: its other tools
/// still run).
pub(super) async fn healthz(State(state): State<WebState>) -> Response {
    let status = state
        .health
        .check(Request::new(HealthCheckRequest {
            service: String::new(),
        }))
        .await
        .map(|response| response.into_inner().status())
        .unwrap_or(ServingStatus::Unknown);
    let code = if status == ServingStatus::Serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        health_body(status, state.operations.engine().registry().sources()).to_string(),
    )
        .into_response()
}

/// `GET /metrics`: every metric in the Prometheus text format (`docs/operations.md` lists them).
pub(super) async fn metrics(State(state): State<WebState>) -> Response {
    let text = state
        .metrics
        .render(state.operations.engine().active_runs());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

/// No route: gRPC clients get UNIMPLEMENTED in their terms, others a 404 in JSON.
pub(super) async fn not_found(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no service or method at {}", uri.path()))
            .into_http::<axum::body::Body>();
    }
    ApiError::new(
        Code::NotFound,
        format!(
            "no route {method} {}; the routes are /v1/tools, /v1/tools/NAME/runs, \
             /v1/agent/runs, /v1/runs, /v1/runs/ID, /v1/runs/ID/events, /v1/runs/ID/cancel, \
             /v1/runs/ID/inputs/REQUEST, /v1/ws, /healthz and /",
            uri.path()
        ),
    )
    .into_response()
}

/// A route that exists, with another method.
pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        Code::Unimplemented,
        format!("{} does not take {method}", uri.path()),
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_json_asks_for_the_run_and_event_stream_wins() {
        let headers = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            headers
        };
        assert!(wants_run(&headers("application/json")));
        assert!(wants_run(&headers("application/json; charset=utf-8")));
        assert!(!wants_run(&headers("text/event-stream")));
        assert!(!wants_run(&headers("text/event-stream, application/json")));
        assert!(!wants_run(&headers("*/*")));
        assert!(!wants_run(&HeaderMap::new()));
    }
}
