//! A [`ModelProvider`] for the OpenAI-compatible chat-completions API with streaming, as served by
//! OpenAI, vLLM, Ollama, llama.cpp's server and LM Studio: `POST {base}/chat/completions` with
//! `stream: true`; the answer comes as server-sent events whose `data:` is one JSON chunk, ending
//! with `data: [DONE]`. Tool calls arrive in pieces keyed by `index`: the id and name first, the
//! arguments split across chunks.

use std::collections::{BTreeMap, HashMap};
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
        let connect = async move {
            let response = http.send().await.map_err(|e| ModelError::Unreachable {
                endpoint: endpoint.clone(),
                reason: error_chain(&e),
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
                calls: BTreeMap::new(),
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
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
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

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Turns the event stream into model output, assembling tool calls.
struct Decoder {
    events: BoxStream<'static, Result<eventsource_stream::Event, String>>,
    calls: BTreeMap<u64, PartialCall>,
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
            .map(|(index, call)| ToolCallRequest {
                id: if call.id.is_empty() {
                    format!("call_{index}")
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
            if let Some(error) = chunk.get("error") {
                let message = error["message"]
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned);
                return self.protocol(format!("the model reported an error: {message}"));
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
                    let index = call["index"].as_u64().unwrap_or(0);
                    let partial = self.calls.entry(index).or_default();
                    if let Some(id) = call["id"].as_str() {
                        partial.id = id.to_owned();
                    }
                    if let Some(name) = call["function"]["name"].as_str() {
                        partial.name.push_str(name);
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
}
