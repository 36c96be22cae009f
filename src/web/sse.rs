//! A run's events as server-sent events:
//!
//! ```text
//! id: 3
//! event: progress
//! data: {"runId":"…","sequence":"3","timestamp":"…","progress":{"progress":0.3}}
//! ```
//!
//! `event` is the `RunEvent.event` oneof field's name; gaps and heartbeats (sequence 0) have no
//! `id`, so a reconnecting `EventSource` resumes after the last real event (`Last-Event-ID`). A
//! run that fails ends the stream with `event: error` and `data: {"code", "message"}`; after the
//! `result` or the error the response ends. Comment lines (`:`) keep an idle stream open.
//!
//! The engine's stream is polled only when the connection takes more, so a slow reader gets
//! progress coalesced as over gRPC, and nothing is buffered here.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;

use super::error::ApiError;
use super::events::{event_json, event_name};
use crate::engine::EventStream;

/// The SSE response for `events`, with the run id in `x-run-id`.
pub(crate) fn sse_response(run_id: &str, events: EventStream, keep_alive: Duration) -> Response {
    let mut response = Sse::new(SseEvents {
        events: Some(events),
    })
    .keep_alive(KeepAlive::new().interval(keep_alive))
    .into_response();
    let headers = response.headers_mut();
    // nginx (and proxies that honour it) must pass each event on at once.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    if let Ok(value) = HeaderValue::from_str(run_id) {
        headers.insert(HeaderName::from_static("x-run-id"), value);
    }
    response
}

/// The SSE error event: `event: error`, `data: {"code", "message"}`.
pub(crate) fn error_event(error: &ApiError) -> Event {
    Event::default()
        .event("error")
        .data(error.body().to_string())
}

/// A run's events as SSE events; ends after the terminal one.
struct SseEvents {
    /// `None` once the stream ended.
    events: Option<EventStream>,
}

impl Stream for SseEvents {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(events) = self.events.as_mut() else {
            return Poll::Ready(None);
        };
        let item = match Pin::new(events).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        let event = match item {
            Some(Ok(event)) => match event_json(&event) {
                Ok(json) => {
                    let sse = Event::default().event(event_name(&event.kind));
                    let sse = if event.sequence > 0 {
                        sse.id(event.sequence.to_string())
                    } else {
                        sse
                    };
                    return Poll::Ready(Some(Ok(sse.data(&*json))));
                }
                Err(error) => error_event(&error),
            },
            Some(Err(error)) => error_event(&ApiError::from(error)),
            None => {
                self.events = None;
                return Poll::Ready(None);
            }
        };
        // An error ends the stream.
        self.events = None;
        Poll::Ready(Some(Ok(event)))
    }
}
