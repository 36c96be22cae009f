//! `/v1/ws`: many runs over one WebSocket, JSON text frames (DESIGN.md, "Web delivery").
//!
//! Client → server, each with an `id` the client chooses (unique among its calls in flight):
//!
//! ```text
//! {"type":"run_tool","id":"c1","tool":"ticks","arguments":{"count":5},"options":{...}}
//! {"type":"run_agent","id":"c2","prompt":"...","tools":["checksum"]}
//! {"type":"watch","id":"c3","runId":"...","after":"0"}      (or "fromLatest": true)
//! {"type":"cancel","id":"c1"}
//! {"type":"respond","id":"c4","runId":"...","requestId":"input-1","value":true}   (or "decline": true)
//! ```
//!
//! Besides `type` and `id`, a message is the JSON of the matching request message
//! (`RunToolRequest`, `RunAgentRequest`, `WatchRunRequest` with `after` for `afterSequence`).
//! Server → client: `{"id":"c1","event":<RunEvent JSON>}` per event, and
//! `{"id":"c1","error":{"code":"ABORTED","message":"..."}}` for a call that fails. Each id ends
//! exactly once: its `result` event or its `error`. `cancel` cancels the run the id started (for
//! everyone, like CancelRun; the id then ends with CANCELLED, or with its result if that came
//! first), or stops a watch (the watched run goes on); cancelling an id not in flight does
//! nothing. `respond` answers an input request of a run (RespondToRun; the `id` is optional):
//! it gets `{"id":"c4","run":<Run JSON>}` once the answer is taken, or an `error`. A malformed message gets an `error` naming the id it gave (or none), and the socket
//! stays open. Closing the socket is a disconnect for every run it started (runs started with
//! `onDisconnect: ON_DISCONNECT_CONTINUE` go on).
//!
//! Bounds: at most `[http] ws_max_runs` calls in flight per socket (more get
//! RESOURCE_EXHAUSTED), messages up to `max_message_bytes` (a larger one ends the socket). Frames are written one at a time and
//! a run's stream is read only when the socket takes the next frame, so a slow client gets
//! progress coalesced and nothing piles up here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::Value;
use tokio_stream::{StreamExt, StreamMap};
use tonic::Code;
use tracing::Instrument;

use super::WebState;
use super::error::ApiError;
use super::events::event_json;
use crate::auth::Caller;
use crate::engine::{EventKind, EventStream};
use crate::json_proto::from_json_value;
use crate::listener::ConnectionSlot;
use crate::pb;
use crate::transport::convert::{agent_request, reply, tool_run_request};
use crate::transport::{run_to_wire, watch_request};

/// The longest id a client may give a call.
const MAX_ID_BYTES: usize = 256;

/// `GET /v1/ws`: upgrades to a session.
pub(super) async fn upgrade(
    State(state): State<WebState>,
    caller: Caller,
    slot: Option<Extension<ConnectionSlot>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::invalid_argument(format!(
                "{}: /v1/ws takes WebSocket connections",
                rejection.body_text()
            ))
            .with_status(rejection.status())
            .into_response();
        }
    };
    let limit = state.max_message_bytes;
    // The session's runs belong to the upgrade request's span (and so to its caller's trace),
    // though the session outlives the request. Taken here: the upgrade callback runs later, in a
    // task of its own, outside the request's span.
    let span = tracing::Span::current();
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            let sessions = state.sessions.clone();
            sessions.tracker.track_future(
                async move {
                    // The session is still a connection: it keeps its slot of
                    // `[http] max_connections` until it ends.
                    let _slot = slot;
                    tokio::select! {
                        () = Session::new(socket, state, caller).run() => {}
                        // The server's close timeout passed: no goodbye.
                        () = sessions.stopped.cancelled() => {}
                    }
                }
                .instrument(span),
            )
        })
}

/// The socket went away (or failed); the session ends.
struct Gone;

/// One socket and the calls in flight on it.
struct Session {
    socket: WebSocket,
    state: WebState,
    /// Who opened the socket: every call on it is theirs.
    caller: Caller,
    /// Runs and watches in flight, by the client's id.
    calls: StreamMap<String, Call>,
}

impl Session {
    fn new(socket: WebSocket, state: WebState, caller: Caller) -> Self {
        Session {
            socket,
            state,
            caller,
            calls: StreamMap::new(),
        }
    }

    async fn run(mut self) {
        let closing = self.state.sessions.closing.clone();
        let keep_alive = self.state.http.keep_alive;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        let mut shutting_down = false;
        loop {
            if shutting_down && self.calls.is_empty() {
                // Every run ended with the server's drain and its end was sent: say goodbye.
                let _ = self
                    .socket
                    .send(Message::Close(Some(CloseFrame {
                        code: close_code::AWAY,
                        reason: "the server is shutting down".into(),
                    })))
                    .await;
                return;
            }
            let sent = tokio::select! {
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => self.command(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        let error = ApiError::invalid_argument(
                            "binary frames are not part of the protocol: send JSON text frames",
                        );
                        self.send(error_frame(None, &error)).await
                    }
                    // tungstenite answers pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                    // Closed or broken: dropping the calls is a disconnect for their runs.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                },
                frame = self.calls.next(), if !self.calls.is_empty() => match frame {
                    Some((_, frame)) => self.send(frame).await,
                    // The last calls ended (and left the map): look at the state again.
                    None => Ok(()),
                },
                _ = ping.tick() => self.socket.send(Message::Ping(Bytes::new())).await.map_err(|_| Gone),
                () = closing.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    Ok(())
                }
            };
            if sent.is_err() {
                return;
            }
        }
    }

    async fn send(&mut self, frame: String) -> Result<(), Gone> {
        self.socket
            .send(Message::Text(frame.into()))
            .await
            .map_err(|_| Gone)
    }

    /// Handles one text message; a malformed one is answered with an error frame.
    async fn command(&mut self, text: &str) -> Result<(), Gone> {
        match self.start(text).await {
            Ok(None) => Ok(()),
            Ok(Some(frame)) => self.send(frame).await,
            Err((id, error)) => self.send(error_frame(id.as_deref(), &error)).await,
        }
    }

    /// Starts (or cancels) what the message asks; returns a frame to send at once, if any.
    async fn start(&mut self, text: &str) -> Result<Option<String>, (Option<String>, ApiError)> {
        let refuse = |id: Option<&str>, error: ApiError| (id.map(str::to_owned), error);
        let value: Value = serde_json::from_str(text).map_err(|e| {
            refuse(
                None,
                ApiError::invalid_argument(format!("the message is not JSON: {e}")),
            )
        })?;
        let Value::Object(mut fields) = value else {
            return Err(refuse(
                None,
                ApiError::invalid_argument(
                    "a message is a JSON object with a \"type\" and an \"id\"",
                ),
            ));
        };
        let id = match fields.remove("id") {
            None => None,
            Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Some(id),
            Some(_) => {
                return Err(refuse(
                    None,
                    ApiError::invalid_argument(format!(
                        "\"id\" must be a non-empty string of at most {MAX_ID_BYTES} bytes"
                    )),
                ));
            }
        };
        let kind = match fields.remove("type") {
            Some(Value::String(kind)) => kind,
            _ => {
                return Err(refuse(
                    id.as_deref(),
                    ApiError::invalid_argument(
                        "\"type\" must be one of run_tool, run_agent, watch, cancel, respond",
                    ),
                ));
            }
        };
        if kind == "respond" {
            return self
                .respond(id.as_deref(), fields)
                .await
                .map(Some)
                .map_err(|error| (id, error));
        }
        let Some(id) = id else {
            return Err(refuse(
                None,
                ApiError::invalid_argument(format!(
                    "a {kind:?} message needs an \"id\" to tag its frames with"
                )),
            ));
        };
        if kind == "cancel" {
            return Ok(self.cancel(&id));
        }
        // An id whose end was sent is free again, even before its stream is dropped.
        if self
            .calls
            .iter()
            .any(|(key, call)| *key == id && call.ended())
        {
            self.calls.remove(&id);
        }
        let call = self
            .begin(&id, &kind, fields)
            .await
            .map_err(|error| (Some(id.clone()), error))?;
        self.calls.insert(id, call);
        Ok(None)
    }

    /// Starts the call `kind` that the message `fields` describe. (`&mut`: the socket in `self`
    /// is not `Sync`, and this waits for the run store.)
    async fn begin(
        &mut self,
        id: &str,
        kind: &str,
        mut fields: serde_json::Map<String, Value>,
    ) -> Result<Call, ApiError> {
        if self.calls.contains_key(id) {
            return Err(ApiError::invalid_argument(format!(
                "id {id:?} is in use by a call in flight on this socket; give each call its own id"
            )));
        }
        let limit = self.state.http.ws_max_runs;
        if self.calls.values().filter(|call| !call.ended()).count() >= limit {
            return Err(ApiError::new(
                Code::ResourceExhausted,
                format!(
                    "this socket has its limit of {limit} calls in flight; wait for one to end \
                     or open another socket"
                ),
            ));
        }
        let operations = &self.state.operations;
        let (run_id, events, watch) = match kind {
            "run_tool" => {
                let request: pb::RunToolRequest = from_json_value(Value::Object(fields))?;
                let handle = operations
                    .run_tool(&self.caller, tool_run_request(request, None))
                    .await?;
                (handle.run_id, handle.events, false)
            }
            "run_agent" => {
                let request: pb::RunAgentRequest = from_json_value(Value::Object(fields))?;
                let handle = operations
                    .run_agent(&self.caller, agent_request(request, None))
                    .await?;
                (handle.run_id, handle.events, false)
            }
            "watch" => {
                if let Some(after) = fields.remove("after") {
                    fields.insert("afterSequence".to_owned(), after);
                }
                let request: pb::WatchRunRequest = from_json_value(Value::Object(fields))?;
                if request.run_id.is_empty() {
                    return Err(ApiError::invalid_argument(
                        "a watch needs \"runId\": the id from the started event or x-run-id",
                    ));
                }
                let request = watch_request(request);
                let events = operations.watch_run(&self.caller, &request).await?;
                (Arc::from(request.run_id), events, true)
            }
            other => {
                return Err(ApiError::invalid_argument(format!(
                    "unknown type {other:?}: one of run_tool, run_agent, watch, cancel, respond"
                )));
            }
        };
        Ok(Call {
            id_json: serde_json::to_string(id).unwrap_or_default(),
            run_id,
            watch,
            events: Some(events),
        })
    }

    /// `respond`: answers an input request (RespondToRun); the frame carries the run as it
    /// stands then.
    async fn respond(
        &mut self,
        id: Option<&str>,
        fields: serde_json::Map<String, Value>,
    ) -> Result<String, ApiError> {
        let request: pb::RespondToRunRequest = from_json_value(Value::Object(fields))?;
        if request.run_id.is_empty() || request.request_id.is_empty() {
            return Err(ApiError::invalid_argument(
                "a respond needs \"runId\" and \"requestId\": the ids from the \
                 input_requested event",
            ));
        }
        let run = self
            .state
            .operations
            .respond(
                &self.caller,
                &request.run_id,
                &request.request_id,
                reply(&request),
            )
            .await?;
        let run = crate::json_proto::to_json(&run_to_wire(run))?;
        let mut frame = String::from("{");
        if let Some(id) = id {
            frame.push_str(&format!("\"id\":{},", Value::String(id.to_owned())));
        }
        frame.push_str(&format!("\"run\":{run}}}"));
        Ok(frame)
    }

    /// `cancel`: the run an id started is cancelled for everyone (its stream then ends with the
    /// run's end); a watch stops at once, and the frame that ends it is returned.
    fn cancel(&mut self, id: &str) -> Option<String> {
        let (run_id, watch) = self
            .calls
            .iter()
            .find(|(key, call)| key.as_str() == id && !call.ended())
            .map(|(_, call)| (Arc::clone(&call.run_id), call.watch))?;
        // (An id not in flight may just have ended: there is nothing to cancel.)
        if watch {
            self.calls.remove(id);
            let error = ApiError::new(
                Code::Cancelled,
                format!("stopped watching run {run_id}; the run goes on"),
            );
            return Some(error_frame(Some(id), &error));
        }
        let operations = Arc::clone(&self.state.operations);
        let caller = self.caller.clone();
        tokio::spawn(async move {
            if let Err(error) = operations.cancel_run(&caller, &run_id).await {
                tracing::debug!(%error, "cancelling a WebSocket run");
            }
        });
        None
    }
}

/// `{"id": ..., "error": {"code", "message"}}`; no `id` when the message named none.
fn error_frame(id: Option<&str>, error: &ApiError) -> String {
    let mut frame = serde_json::Map::new();
    if let Some(id) = id {
        frame.insert("id".to_owned(), Value::String(id.to_owned()));
    }
    frame.insert("error".to_owned(), error.body());
    Value::Object(frame).to_string()
}

/// One call's frames: its events, then its end.
struct Call {
    /// The client's id, as JSON.
    id_json: String,
    run_id: Arc<str>,
    /// A watch (stopping it never affects the run) rather than a run this socket started.
    watch: bool,
    /// `None` once the call ended (or was stopped).
    events: Option<EventStream>,
}

impl Call {
    /// Whether the call's end (its result or error) was handed out.
    fn ended(&self) -> bool {
        self.events.is_none()
    }
}

impl Stream for Call {
    type Item = String;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        let Some(events) = self.events.as_mut() else {
            return Poll::Ready(None);
        };
        let item = match Pin::new(events).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        let error = match item {
            Some(Ok(event)) => match event_json(&event) {
                Ok(json) => {
                    if matches!(event.kind, EventKind::Result(_)) {
                        self.events = None;
                    }
                    return Poll::Ready(Some(format!(
                        "{{\"id\":{},\"event\":{json}}}",
                        self.id_json
                    )));
                }
                Err(error) => error,
            },
            Some(Err(error)) => ApiError::from(error),
            None => {
                self.events = None;
                return Poll::Ready(None);
            }
        };
        // An error ends the call.
        self.events = None;
        Poll::Ready(Some(format!(
            "{{\"id\":{},\"error\":{}}}",
            self.id_json,
            error.body()
        )))
    }
}
