//! HTTP-side helpers for the web tests: an HTTP/1.1 client, a strict reader of server-sent events
//! as they arrive on the wire, and a WebSocket client.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

/// An HTTP/1.1 client with generous timeouts (a test that hangs fails instead).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

/// One block of an SSE stream, as written on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Lines starting with `:` (keep-alive).
    Comment(String),
    /// An event: `id:` (absent for gaps and heartbeats), `event:`, one `data:` line.
    Event {
        id: Option<String>,
        event: String,
        data: String,
    },
}

impl Frame {
    /// The event's name, or `":"` for a comment.
    pub fn name(&self) -> &str {
        match self {
            Frame::Comment(_) => ":",
            Frame::Event { event, .. } => event,
        }
    }

    /// The event's data parsed as JSON.
    pub fn json(&self) -> Value {
        match self {
            Frame::Event { data, .. } => serde_json::from_str(data).expect("data is JSON"),
            Frame::Comment(text) => panic!("a comment has no data: {text:?}"),
        }
    }

    /// The `id:` line, as a number.
    pub fn id(&self) -> Option<u64> {
        match self {
            Frame::Event { id, .. } => id.as_ref().map(|id| id.parse().expect("numeric id")),
            Frame::Comment(_) => None,
        }
    }
}

/// Reads an SSE response frame by frame, checking the framing strictly.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buffer: String,
}

impl SseReader {
    /// Checks the response is an SSE stream and starts reading it.
    pub fn new(response: reqwest::Response) -> SseReader {
        assert_eq!(response.status(), 200, "an SSE response is 200");
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["x-accel-buffering"], "no");
        assert_eq!(headers["cache-control"], "no-cache");
        SseReader {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next frame; `None` when the response ended (cleanly: a broken body fails the test).
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(block.trim_end_matches('\n')));
            }
            match tokio::time::timeout(Duration::from_secs(60), self.body.next()).await {
                Err(_) => panic!("no SSE data for 60 s"),
                Ok(None) => {
                    assert!(
                        self.buffer.is_empty(),
                        "the stream ended inside a frame: {:?}",
                        self.buffer
                    );
                    return None;
                }
                Ok(Some(chunk)) => {
                    let chunk = chunk.expect("the SSE body ends cleanly");
                    self.buffer
                        .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
                }
            }
        }
    }

    /// The next frame that is not a comment.
    pub async fn next_event(&mut self) -> Option<Frame> {
        loop {
            match self.next().await? {
                Frame::Comment(_) => continue,
                event => return Some(event),
            }
        }
    }

    /// Every remaining event (comments left out), up to the end of the response.
    pub async fn rest(&mut self) -> Vec<Frame> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            events.push(event);
        }
        events
    }
}

fn parse_block(block: &str) -> Frame {
    if block.lines().all(|line| line.starts_with(':')) {
        return Frame::Comment(block.to_owned());
    }
    let (mut id, mut event, mut data) = (None, None, None);
    for line in block.lines() {
        let (key, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("malformed SSE line {line:?} in {block:?}"));
        let slot = match key {
            "id" => &mut id,
            "event" => &mut event,
            "data" => &mut data,
            _ => panic!("unexpected SSE field {key:?} in {block:?}"),
        };
        assert!(slot.is_none(), "{key} twice in {block:?}");
        *slot = Some(value.to_owned());
    }
    Frame::Event {
        id,
        event: event.unwrap_or_else(|| panic!("no event: line in {block:?}")),
        data: data.unwrap_or_else(|| panic!("no data: line in {block:?}")),
    }
}

/// The oneof key a RunEvent JSON carries (`started`, `progress`, `toolCallStarted`, ...).
pub fn event_key(event: &Value) -> String {
    const KINDS: [&str; 8] = [
        "started",
        "progress",
        "result",
        "toolCallStarted",
        "toolCallFinished",
        "message",
        "gap",
        "heartbeat",
    ];
    let keys: Vec<&str> = KINDS
        .into_iter()
        .filter(|kind| event.get(*kind).is_some())
        .collect();
    assert_eq!(keys.len(), 1, "one event kind in {event}");
    keys[0].to_owned()
}

/// The SSE event name of a oneof key: `toolCallStarted` → `tool_call_started`.
pub fn snake(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
