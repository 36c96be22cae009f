//! A [`ModelProvider`] for the OpenAI-compatible chat-completions API with streaming, as served by
//! OpenAI, vLLM, Ollama, llama.cpp's server and LM Studio: `POST {base}/chat/completions` with
//! `stream: true`; the answer comes as server-sent events whose `data:` is one JSON chunk, ending
//! with `data: [DONE]`. Tool calls arrive in pieces keyed by `index`: the id and name first, the
//! arguments split across chunks. Servers differ in the details, and the decoder takes them all:
//! a piece without `index` belongs to the call with its `id` (a new `id` is a new call; no `id`
//! continues the last call), a new `id` at an `index` already used is a new call, and a piece
//! repeating its call's whole name does not add to it. An error chunk (`data: {"error": ...}`)
//! ends the answer with [`ModelError::Failed`].

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::model::{
    ChatMessage, ModelError, ModelOutput, ModelProvider, ModelRequest, ToolCallRequest,
};
use crate::tools::ToolSpec;

/// Talks to one OpenAI-compatible endpoint.
pub struct OpenAiProvider {
    client: reqwest::Client,
    endpoint: String,
    api_key: Option<String>,
}

impl OpenAiProvider {
    /// A provider for the API at `base_url` (ending in `/v1`), sending `api_key` as a bearer token
    /// when there is one.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, ModelError> {
        let endpoint = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A model may think for a while between chunks, but not forever.
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ModelError::Unreachable {
                endpoint: endpoint.clone(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(OpenAiProvider {
            client,
            endpoint,
            api_key,
        })
    }
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("OpenAiProvider")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl ModelProvider for OpenAiProvider {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn stream(&self, request: ModelRequest) -> BoxStream<'static, Result<ModelOutput, ModelError>> {
        let names = Arc::new(NameMap::new(&request.tools));
        let body = request_body(&request, &names);
        let endpoint = self.endpoint.clone();
        let mut http = self.client.post(&self.endpoint).json(&body);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        // The model call joins the run's trace.
        let mut trace = reqwest::header::HeaderMap::new();
        crate::traces::inject_headers(&mut trace);
        if !trace.is_empty() {
            http = http.headers(trace);
        }
        let connect = async move {
            let response = http.send().await.map_err(|e| ModelError::Unreachable {
                endpoint: endpoint.clone(),
                // The message names the URL once, as `endpoint`.
                reason: error_chain(&e.without_url()),
            })?;
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                return Err(ModelError::Refused {
                    endpoint,
                    status: status.as_u16(),
                    message: error_message(&text),
                });
            }
            let events = response
                .bytes_stream()
                .eventsource()
                .map_err(|e| e.to_string())
                .boxed();
            Ok(Decoder {
                events,
                calls: Vec::new(),
                finished: false,
                over: false,
                names,
                endpoint,
            })
        };
        stream::once(connect)
            .flat_map(|connected| match connected {
                Ok(decoder) => stream::unfold(decoder, |mut decoder| async move {
                    decoder.next().await.map(|item| (item, decoder))
                })
                .left_stream(),
                Err(error) => stream::once(async move { Err(error) }).right_stream(),
            })
            .boxed()
    }
}

/// The error and its causes, since reqwest's own message rarely says what went wrong.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        // Wrappers that only repeat their cause's words (hyper's "tcp connect error") once.
        let said = cause.to_string();
        if said != last {
            text.push_str(": ");
            text.push_str(&said);
        }
        last = said;
        source = cause.source();
    }
    text
}

/// The message of an OpenAI-style error body (`{"error": {"message": ...}}`), or the body itself.
fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v["error"]["message"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .map(str::to_owned)
    });
    let mut message = from_json.unwrap_or_else(|| body.trim().to_owned());
    if message.chars().count() > 500 {
        message = message.chars().take(500).chain(['…']).collect();
    }
    if message.is_empty() {
        "(no message)".to_owned()
    } else {
        message
    }
}

/// Tool names as the model sees them: OpenAI function names allow only `[a-zA-Z0-9_-]{1,64}`, while
/// registry names may hold dots (`files.read`). The mapping is made per request and reversed on
/// the way back.
struct NameMap {
    to_model: HashMap<String, String>,
    to_registry: HashMap<String, String>,
}

impl NameMap {
    fn new(tools: &[ToolSpec]) -> Self {
        let mut map = NameMap {
            to_model: HashMap::new(),
            to_registry: HashMap::new(),
        };
        for tool in tools {
            let base: String = tool
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(60)
                .collect();
            let mut candidate = base.clone();
            let mut n = 2;
            while map.to_registry.contains_key(&candidate) {
                candidate = format!("{base}_{n}");
                n += 1;
            }
            map.to_registry.insert(candidate.clone(), tool.name.clone());
            map.to_model.insert(tool.name.clone(), candidate);
        }
        map
    }

    fn model_name<'a>(&'a self, registry_name: &'a str) -> &'a str {
        self.to_model
            .get(registry_name)
            .map_or(registry_name, String::as_str)
    }

    fn registry_name(&self, model_name: &str) -> String {
        self.to_registry
            .get(model_name)
            .cloned()
            .unwrap_or_else(|| model_name.to_owned())
    }
}

fn request_body(request: &ModelRequest, names: &NameMap) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|message| match message {
            ChatMessage::System(text) => json!({"role": "system", "content": text}),
            ChatMessage::User(text) => json!({"role": "user", "content": text}),
            ChatMessage::Assistant { text, tool_calls } => {
                let mut message = json!({"role": "assistant", "content": text});
                if !tool_calls.is_empty() {
                    message["tool_calls"] = tool_calls
                        .iter()
                        .map(|call| {
                            json!({
                                "id": call.id,
                                "type": "function",
                                "function": {"name": names.model_name(&call.name), "arguments": call.arguments},
                            })
                        })
                        .collect();
                }
                message
            }
            ChatMessage::ToolResult { call_id, content } => {
                json!({"role": "tool", "tool_call_id": call_id, "content": content})
            }
        })
        .collect();
    let mut body = json!({"model": request.model, "stream": true, "messages": messages});
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": names.model_name(&tool.name),
                        "description": tool.description,
                        "parameters": tool.input_schema,
                    },
                })
            })
            .collect();
    }
    body
}

/// A tool call being assembled from its pieces.
#[derive(Default)]
struct PartialCall {
    /// The `index` the server gave it, if any.
    index: Option<u64>,
    id: String,
    name: String,
    arguments: String,
}

impl PartialCall {
    fn add_name(&mut self, piece: &str) {
        // Some servers repeat the whole name in every piece; OpenAI sends it once.
        if self.name != piece {
            self.name.push_str(piece);
        }
    }
}

/// The call `piece` (one entry of a delta's `tool_calls`) belongs to among the calls of the answer
/// so far (in the order they first appeared); a new one when it starts a call.
fn call_for<'a>(calls: &'a mut Vec<PartialCall>, piece: &Value) -> &'a mut PartialCall {
    let index = piece["index"].as_u64();
    let id = piece["id"].as_str().filter(|id| !id.is_empty());
    let found = match (index, id) {
        (Some(index), id) => calls.iter().rposition(|call| {
            call.index == Some(index) && id.is_none_or(|id| call.id.is_empty() || call.id == id)
        }),
        (None, Some(id)) => calls.iter().rposition(|call| call.id == id),
        (None, None) => calls.len().checked_sub(1),
    };
    let position = found.unwrap_or_else(|| {
        calls.push(PartialCall {
            index,
            ..PartialCall::default()
        });
        calls.len() - 1
    });
    &mut calls[position]
}

/// Whether an error chunk's `error` says the endpoint is overloaded, rate-limited or failing on
/// its side: by its `type` or `code` (`overloaded_error`, `server_error`, `rate_limit_exceeded`,
/// `InternalServerError`, `ServiceUnavailableError`…), or a numeric `code` or `status` of 429
/// or 5xx.
fn is_transient(error: &Value) -> bool {
    let named = ["type", "code"].iter().any(|key| {
        error[*key].as_str().is_some_and(|name| {
            let name: String = name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase();
            ["overloaded", "servererror", "ratelimit", "unavailable"]
                .iter()
                .any(|word| name.contains(word))
        })
    });
    let numbered = ["code", "status"].iter().any(|key| {
        let value = &error[*key];
        let number = value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()));
        number.is_some_and(|n| n == 429 || (500..600).contains(&n))
    });
    named || numbered
}

/// Turns the event stream into model output, assembling tool calls.
struct Decoder {
    events: BoxStream<'static, Result<eventsource_stream::Event, String>>,
    calls: Vec<PartialCall>,
    finished: bool,
    over: bool,
    names: Arc<NameMap>,
    endpoint: String,
}

impl Decoder {
    fn protocol(&mut self, reason: String) -> Option<Result<ModelOutput, ModelError>> {
        self.over = true;
        Some(Err(ModelError::Protocol {
            endpoint: self.endpoint.clone(),
            reason,
        }))
    }

    fn done(&mut self) -> Option<Result<ModelOutput, ModelError>> {
        self.over = true;
        let tool_calls = std::mem::take(&mut self.calls)
            .into_iter()
            .enumerate()
            .map(|(position, call)| ToolCallRequest {
                id: if call.id.is_empty() {
                    format!("call_{position}")
                } else {
                    call.id
                },
                name: self.names.registry_name(&call.name),
                arguments: call.arguments,
            })
            .collect();
        Some(Ok(ModelOutput::Done { tool_calls }))
    }

    async fn next(&mut self) -> Option<Result<ModelOutput, ModelError>> {
        if self.over {
            return None;
        }
        loop {
            let event = match self.events.next().await {
                None if self.finished => return self.done(),
                None => {
                    return self.protocol("the stream ended before the answer was complete".into());
                }
                Some(Err(reason)) => {
                    self.over = true;
                    return Some(Err(ModelError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        reason: format!("the stream broke: {reason}"),
                    }));
                }
                Some(Ok(event)) => event,
            };
            let data = event.data.trim();
            if data.is_empty() {
                continue;
            }
            if data == "[DONE]" {
                return self.done();
            }
            let chunk: Value = match serde_json::from_str(data) {
                Ok(chunk) => chunk,
                Err(e) => {
                    let start: String = data.chars().take(80).collect();
                    return self.protocol(format!("a chunk is not JSON ({e}): {start:?}"));
                }
            };
            if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
                self.over = true;
                let message = error["message"]
                    .as_str()
                    .or_else(|| error.as_str())
                    .map_or_else(|| error.to_string(), str::to_owned);
                return Some(Err(ModelError::Failed {
                    endpoint: self.endpoint.clone(),
                    message,
                    transient: is_transient(error),
                }));
            }
            // Chunks without choices (usage reports) carry nothing for us.
            let Some(choice) = chunk["choices"].get(0) else {
                continue;
            };
            if choice["finish_reason"].is_string() {
                self.finished = true;
            }
            let delta = &choice["delta"];
            if let Some(calls) = delta["tool_calls"].as_array() {
                for call in calls {
                    let partial = call_for(&mut self.calls, call);
                    if let Some(id) = call["id"].as_str().filter(|id| !id.is_empty()) {
                        partial.id = id.to_owned();
                    }
                    if let Some(name) = call["function"]["name"].as_str() {
                        partial.add_name(name);
                    }
                    if let Some(arguments) = call["function"]["arguments"].as_str() {
                        partial.arguments.push_str(arguments);
                    }
                }
            }
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                return Some(Ok(ModelOutput::Text(text.to_owned())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolKind;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: String::new(),
            input_schema: json!({"type": "object"}),
            output_schema: None,
            kind: ToolKind::Native,
        }
    }

    #[test]
    fn dotted_names_are_mapped_for_the_model_and_back() {
        let names = NameMap::new(&[spec("files.read"), spec("files_read"), spec("ticks")]);
        assert_eq!(names.model_name("files.read"), "files_read");
        assert_eq!(names.model_name("files_read"), "files_read_2");
        assert_eq!(names.registry_name("files_read"), "files.read");
        assert_eq!(names.registry_name("files_read_2"), "files_read");
        assert_eq!(names.registry_name("ticks"), "ticks");
        assert_eq!(names.registry_name("invented"), "invented");
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(r#"{"error":{"message":"model 'x' not found"}}"#),
            "model 'x' not found"
        );
        assert_eq!(error_message("Bad Gateway"), "Bad Gateway");
    }

    /// Decodes `chunks` (each one `data:` payload: a JSON chunk, or a string such as `[DONE]`
    /// sent as it is) from an endpoint offering the tools `names`.
    fn decode(names: &[&str], chunks: &[Value]) -> Vec<Result<ModelOutput, ModelError>> {
        let specs: Vec<ToolSpec> = names.iter().map(|name| spec(name)).collect();
        let events: Vec<Result<eventsource_stream::Event, String>> = chunks
            .iter()
            .map(|chunk| {
                Ok(eventsource_stream::Event {
                    data: chunk
                        .as_str()
                        .map_or_else(|| chunk.to_string(), str::to_owned),
                    ..eventsource_stream::Event::default()
                })
            })
            .collect();
        let mut decoder = Decoder {
            events: stream::iter(events).boxed(),
            calls: Default::default(),
            finished: false,
            over: false,
            names: Arc::new(NameMap::new(&specs)),
            endpoint: "http://model/v1/chat/completions".into(),
        };
        futures::executor::block_on(async {
            let mut outputs = Vec::new();
            while let Some(output) = decoder.next().await {
                outputs.push(output);
            }
            outputs
        })
    }

    fn delta(delta: Value, finish_reason: Option<&str>) -> Value {
        json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    }

    fn calls_of(outputs: Vec<Result<ModelOutput, ModelError>>) -> Vec<ToolCallRequest> {
        match outputs.into_iter().last() {
            Some(Ok(ModelOutput::Done { tool_calls })) => tool_calls,
            other => panic!("the answer did not finish: {other:?}"),
        }
    }

    fn call(id: &str, name: &str, arguments: &str) -> ToolCallRequest {
        ToolCallRequest {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn calls_without_index_stay_apart() {
        let outputs = decode(
            &["ticks", "checksum"],
            &[
                delta(
                    json!({"tool_calls": [{"id": "a", "type": "function",
                        "function": {"name": "ticks", "arguments": "{\"count\": 1}"}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls": [{"id": "b", "type": "function",
                        "function": {"name": "checksum", "arguments": "{}"}}]}),
                    None,
                ),
                delta(json!({}), Some("tool_calls")),
                json!("[DONE]"),
            ],
        );
        assert_eq!(
            calls_of(outputs),
            [
                call("a", "ticks", r#"{"count": 1}"#),
                call("b", "checksum", "{}")
            ]
        );
    }

    #[test]
    fn arguments_without_index_or_id_continue_the_last_call() {
        let outputs = decode(
            &["ticks"],
            &[
                delta(
                    json!({"tool_calls": [{"id": "a", "function": {"name": "ticks", "arguments": "{\"co"}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls": [{"function": {"arguments": "unt\": 2}"}}]}),
                    None,
                ),
                delta(json!({}), Some("tool_calls")),
            ],
        );
        assert_eq!(calls_of(outputs), [call("a", "ticks", r#"{"count": 2}"#)]);
    }

    #[test]
    fn a_name_repeated_in_every_delta_is_not_doubled() {
        let outputs = decode(
            &["ticks"],
            &[
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "ticks", "arguments": ""}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "function": {"name": "ticks", "arguments": "{\"count\""}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "ticks", "arguments": ": 3}"}}]}),
                    None,
                ),
                delta(json!({}), Some("tool_calls")),
            ],
        );
        assert_eq!(calls_of(outputs), [call("a", "ticks", r#"{"count": 3}"#)]);
    }

    #[test]
    fn a_new_id_at_a_used_index_starts_a_new_call() {
        // Some servers number every call 0.
        let outputs = decode(
            &["ticks"],
            &[
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "ticks", "arguments": "{}"}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "ticks", "arguments": "{}"}}]}),
                    None,
                ),
                delta(json!({}), Some("tool_calls")),
            ],
        );
        assert_eq!(
            calls_of(outputs),
            [call("a", "ticks", "{}"), call("b", "ticks", "{}")]
        );
    }

    #[test]
    fn indexed_calls_split_across_chunks_assemble_in_order() {
        let outputs = decode(
            &["ticks"],
            &[
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "ticks", "arguments": ""}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "ticks", "arguments": "{\"count\": "}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls": [{"index": 1, "function": {"arguments": "4}"}}]}),
                    None,
                ),
                delta(json!({}), Some("tool_calls")),
            ],
        );
        assert_eq!(
            calls_of(outputs),
            [
                call("a", "ticks", "{}"),
                call("b", "ticks", r#"{"count": 4}"#)
            ]
        );
    }

    #[test]
    fn an_error_chunk_ends_the_answer_and_says_whether_it_may_pass() {
        let overloaded = decode(
            &[],
            &[
                delta(json!({"content": "Let me"}), None),
                json!({"error": {"message": "Overloaded", "type": "overloaded_error"}}),
                delta(json!({"content": "never read"}), None),
            ],
        );
        assert_eq!(overloaded.len(), 2, "{overloaded:?}");
        assert!(matches!(&overloaded[0], Ok(ModelOutput::Text(t)) if t == "Let me"));
        assert!(
            matches!(&overloaded[1], Err(ModelError::Failed { message, transient: true, .. }) if message == "Overloaded"),
            "{overloaded:?}"
        );

        for error in [
            json!({"message": "x", "type": "server_error"}),
            json!({"message": "x", "code": "rate_limit_exceeded"}),
            json!({"message": "x", "type": "InternalServerError", "code": 500}),
            json!({"message": "x", "type": "ServiceUnavailableError"}),
            json!({"message": "x", "code": 503}),
            json!({"message": "x", "status": "429"}),
        ] {
            assert!(is_transient(&error), "{error}");
        }
        for error in [
            json!({"message": "x", "type": "invalid_request_error"}),
            json!({"message": "x", "code": 400}),
            json!("just a message"),
        ] {
            assert!(!is_transient(&error), "{error}");
        }
    }
}
