//! The `toolstream.v1.ToolService` implementation: requests in, one operation each, events out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use super::caller_of;
use super::convert::{agent_request, tool_run_request, tools_to_wire};
use super::wire::EncodedEvent;
use crate::engine::{EventStream, RunHandle};
use crate::operations::Operations;
use crate::pb;
use crate::pb::encoded::tool_service_server::ToolService;
use crate::status;

/// The gRPC service over the [`Operations`].
#[derive(Clone)]
pub struct ToolServiceImpl {
    operations: Arc<Operations>,
}

impl ToolServiceImpl {
    /// A service calling `operations` (which the other faces share).
    pub fn new(operations: Arc<Operations>) -> Self {
        ToolServiceImpl { operations }
    }
}

/// Reads the client's deadline from the `grpc-timeout` header ("100m", "5S", ...).
pub(crate) fn grpc_timeout(metadata: &MetadataMap) -> Result<Option<Duration>, Status> {
    deadline_from_grpc_timeout(metadata.get("grpc-timeout").map(|value| value.as_bytes()))
}

/// How much of a malformed `grpc-timeout` its error repeats (a valid one has at most 9 bytes).
const BAD_TIMEOUT_SHOWN: usize = 32;

/// The deadline a `grpc-timeout` header value gives (`None` without the header), or
/// INVALID_ARGUMENT naming the value when it is no gRPC timeout: a call that asked for a deadline
/// must not run without one because the server could not read it.
pub(crate) fn deadline_from_grpc_timeout(value: Option<&[u8]>) -> Result<Option<Duration>, Status> {
    let Some(value) = value else {
        return Ok(None);
    };
    match std::str::from_utf8(value).ok().and_then(parse_grpc_timeout) {
        Some(timeout) => Ok(Some(timeout)),
        None => {
            let shown = String::from_utf8_lossy(&value[..value.len().min(BAD_TIMEOUT_SHOWN)]);
            Err(Status::invalid_argument(format!(
                "the grpc-timeout header {shown:?} is not a gRPC timeout: 1 to 8 digits and a \
                 unit (H, M, S, m, u or n), such as 30S or 500m; leave the header out for no \
                 deadline"
            )))
        }
    }
}

/// The deadline a `grpc-timeout` value ("100m", "5S", ...) gives, from now.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A run's events as wire messages; the run's error as the closing status.
pub struct WireEvents {
    events: EventStream,
}

impl WireEvents {
    pub(crate) fn new(events: EventStream) -> Self {
        WireEvents { events }
    }
}

impl Stream for WireEvents {
    type Item = Result<EncodedEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.events).poll_next(cx).map(|item| {
            item.map(|event| event.map(EncodedEvent::of).map_err(status::from_run_error))
        })
    }
}

/// The streaming response for a started run, with its id in the initial metadata.
pub(crate) fn stream_response(handle: RunHandle) -> Response<WireEvents> {
    let mut response = Response::new(WireEvents::new(handle.events));
    if let Ok(value) = MetadataValue::try_from(&*handle.run_id) {
        response.metadata_mut().insert("x-run-id", value);
    }
    response
}

#[tonic::async_trait]
impl ToolService for ToolServiceImpl {
    async fn list_tools(
        &self,
        request: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        let tools = self.operations.list_tools(&caller_of(&request));
        Ok(Response::new(tools_to_wire(tools)))
    }

    type RunToolStream = WireEvents;

    async fn run_tool(
        &self,
        request: Request<pb::RunToolRequest>,
    ) -> Result<Response<Self::RunToolStream>, Status> {
        let deadline = grpc_timeout(request.metadata())?;
        let caller = caller_of(&request);
        let handle = self
            .operations
            .run_tool(&caller, tool_run_request(request.into_inner(), deadline))
            .await
            .map_err(status::from_run_error)?;
        Ok(stream_response(handle))
    }

    type RunAgentStream = WireEvents;

    async fn run_agent(
        &self,
        request: Request<pb::RunAgentRequest>,
    ) -> Result<Response<Self::RunAgentStream>, Status> {
        let deadline = grpc_timeout(request.metadata())?;
        let caller = caller_of(&request);
        let handle = self
            .operations
            .run_agent(&caller, agent_request(request.into_inner(), deadline))
            .await
            .map_err(status::from_run_error)?;
        Ok(stream_response(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units_are_understood() {
        let mut metadata = MetadataMap::new();
        for (text, expected) in [
            ("250m", Duration::from_millis(250)),
            ("3S", Duration::from_secs(3)),
            ("2M", Duration::from_secs(120)),
            ("1H", Duration::from_secs(3600)),
            ("7u", Duration::from_micros(7)),
        ] {
            metadata.insert("grpc-timeout", text.parse().unwrap());
            assert_eq!(grpc_timeout(&metadata).unwrap(), Some(expected), "{text}");
        }
        for text in ["12x", "+5S", "123456789S", "S", "1.5S", "-1S"] {
            metadata.insert("grpc-timeout", text.parse().unwrap());
            let status = grpc_timeout(&metadata).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{text}");
            assert!(status.message().contains(text), "{status:?}");
        }
        assert_eq!(grpc_timeout(&MetadataMap::new()).unwrap(), None);
    }
}
