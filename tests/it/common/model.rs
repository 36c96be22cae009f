//! A stand-in for an OpenAI-compatible model server, speaking the real wire protocol:
//! `POST /v1/chat/completions` answered with `text/event-stream`, one JSON chunk per `data:` line,
//! tool-call arguments split across chunks, and `data: [DONE]`. Each test scripts its replies and
//! reads back the requests the agent sent.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// One scripted answer.
pub enum Reply {
    /// An event stream with these `data:` payloads, in order.
    Events(Vec<String>),
    /// An HTTP error with this body.
    Status(u16, String),
    /// Waits for the future once the request has arrived, then answers with the reply: lets a
    /// test act at the moment the agent has sent its request and before it hears back.
    After(BoxFuture<'static, ()>, Box<Reply>),
}

/// A model turn that streams `text` in the given pieces, then stops.
pub fn text(pieces: &[&str]) -> Reply {
    let mut events: Vec<String> = pieces
        .iter()
        .map(|piece| chunk(json!({"content": piece}), None))
        .collect();
    events.push(chunk(json!({}), Some("stop")));
    events.push("[DONE]".into());
    Reply::Events(events)
}

/// A model turn that asks for tool calls `(id, name, arguments)`, each call's arguments split
/// across three chunks, as real servers send them.
pub fn tool_calls(calls: &[(&str, &str, &str)]) -> Reply {
    let mut events = vec![chunk(json!({"role": "assistant", "content": null}), None)];
    for (index, (id, name, arguments)) in calls.iter().enumerate() {
        events.push(chunk(
            json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                   "function": {"name": name, "arguments": ""}}]}),
            None,
        ));
        let third = arguments.len().div_ceil(3);
        let bytes: Vec<char> = arguments.chars().collect();
        for piece in bytes.chunks(third.max(1)) {
            let piece: String = piece.iter().collect();
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                None,
            ));
        }
    }
    events.push(chunk(json!({}), Some("tool_calls")));
    events.push("[DONE]".into());
    Reply::Events(events)
}

/// A model turn that streams `pieces` of text, then an error chunk (`data: {"error": error}`) in
/// place of the rest, as an endpoint that fails mid-answer does; no `[DONE]` follows.
pub fn fails_mid_answer(pieces: &[&str], error: Value) -> Reply {
    let mut events: Vec<String> = pieces
        .iter()
        .map(|piece| chunk(json!({"content": piece}), None))
        .collect();
    events.push(json!({ "error": error }).to_string());
    Reply::Events(events)
}

fn chunk(delta: Value, finish_reason: Option<&str>) -> String {
    json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "standin",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    })
    .to_string()
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Value>>,
    authorizations: Mutex<Vec<Option<String>>>,
    traceparents: Mutex<Vec<Option<String>>>,
}

/// The running stand-in.
pub struct StandIn {
    /// Base URL, ending in `/v1`.
    pub url: String,
    script: Arc<Script>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Serves `replies`, one per request, on 127.0.0.1 and a free port.
    pub async fn start(replies: Vec<Reply>) -> StandIn {
        let script = Arc::new(Script {
            replies: Mutex::new(replies.into()),
            requests: Mutex::default(),
            authorizations: Mutex::default(),
            traceparents: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StandIn { url, script, task }
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.script.requests.lock().unwrap().clone()
    }

    /// The `Authorization` header of each request received so far (`None` when absent).
    #[allow(dead_code)] // Not every test file that includes this module reads it.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.script.authorizations.lock().unwrap().clone()
    }

    /// The `traceparent` header of each request received so far (`None` when absent).
    #[allow(dead_code)] // Not every test file that includes this module reads it.
    pub fn traceparents(&self) -> Vec<Option<String>> {
        self.script.traceparents.lock().unwrap().clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn complete(State(script): State<Arc<Script>>, headers: HeaderMap, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    script.authorizations.lock().unwrap().push(authorization);
    let traceparent = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    script.traceparents.lock().unwrap().push(traceparent);
    script.requests.lock().unwrap().push(request);
    let mut reply = script.replies.lock().unwrap().pop_front();
    while let Some(Reply::After(gate, then)) = reply {
        gate.await;
        reply = Some(*then);
    }
    match reply {
        Some(Reply::Events(events)) => {
            let frames = events
                .into_iter()
                .map(|data| Ok::<_, Infallible>(format!("data: {data}\n\n")));
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(futures::stream::iter(frames)))
                .unwrap()
        }
        Some(Reply::Status(status, body)) => Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap(),
        Some(Reply::After(..)) => unreachable!("unwrapped above"),
        None => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("the test scripted no more replies"))
            .unwrap(),
    }
}

impl StandIn {
    /// Whether the agent's request number `turn` (from 0) gave the model a tool's answer
    /// containing `text`.
    pub fn told(&self, turn: usize, text: &str) -> bool {
        let requests = self.requests();
        let Some(messages) = requests.get(turn).and_then(|r| r["messages"].as_array()) else {
            return false;
        };
        messages.iter().any(|message| {
            message["role"] == "tool"
                && message["content"]
                    .as_str()
                    .is_some_and(|content| content.contains(text))
        })
    }

    /// Agent settings whose model is this stand-in (`standin-model`, at most 4 steps).
    pub fn agent_settings(&self) -> toolstream::agent::AgentSettings {
        let provider: Arc<dyn toolstream::agent::ModelProvider> = Arc::new(
            toolstream::agent::openai::OpenAiProvider::new(&self.url, None).expect("provider"),
        );
        toolstream::agent::AgentSettings {
            provider: Some(provider),
            default_model: Some("standin-model".into()),
            default_max_steps: 4,
            max_parallel_calls: toolstream::agent::DEFAULT_MAX_PARALLEL_CALLS,
        }
    }
}
