//! The `toolstream.v1.ToolService` implementation: requests in, engine calls, events out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use super::convert::{agent_request, tool_run_request};
use super::wire::EncodedEvent;
use crate::agent::Agent;
use crate::auth::Access;
use crate::engine::{Engine, EventStream, RunError, RunHandle};
use crate::json_proto::json_to_struct;
use crate::pb;
use crate::pb::encoded::tool_service_server::ToolService;

/// The gRPC service over an [`Engine`].
#[derive(Clone)]
pub struct ToolServiceImpl {
    engine: Arc<Engine>,
    agent: Arc<Agent>,
}

impl ToolServiceImpl {
    /// A service running tools on `engine` and agents with `agent` (which the web routes may
    /// share).
    pub fn new(engine: Arc<Engine>, agent: impl Into<Arc<Agent>>) -> Self {
        ToolServiceImpl {
            engine,
            agent: agent.into(),
        }
    }
}

/// The single place where run errors become gRPC status codes.
pub fn status_from_run_error(error: RunError) -> Status {
    use crate::tools::ToolError;
    let message = error.to_string();
    match error {
        RunError::UnknownTool(_) | RunError::UnknownRun(_) | RunError::UnknownInputRequest(_) => {
            Status::not_found(message)
        }
        RunError::CursorPastEnd { .. } => Status::out_of_range(message),
        RunError::InvalidArguments(_) => Status::invalid_argument(message),
        RunError::Tool { error, .. } => match error {
            ToolError::Failed(_) => Status::aborted(message),
            ToolError::Internal(_) => Status::internal(message),
            ToolError::InvalidArguments(_) => Status::invalid_argument(message),
            ToolError::PermissionDenied(_) => Status::permission_denied(message),
            ToolError::NotFound(_) => Status::not_found(message),
            ToolError::Unavailable(_) => Status::unavailable(message),
            ToolError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ToolError::OutOfRange(_) => Status::out_of_range(message),
        },
        RunError::Panicked { .. } | RunError::Internal(_) => Status::internal(message),
        RunError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
        RunError::Busy { .. } | RunError::PrincipalBusy { .. } => {
            Status::resource_exhausted(message)
        }
        RunError::PermissionDenied(_) => Status::permission_denied(message),
        RunError::ShuttingDown
        | RunError::Interrupted
        | RunError::Unavailable(_)
        | RunError::StoreUnavailable { .. }
        | RunError::ReplicaLost { .. } => Status::unavailable(message),
        RunError::Cancelled | RunError::CancelRequested => Status::cancelled(message),
        RunError::FailedPrecondition(_) => Status::failed_precondition(message),
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
            item.map(|event| event.map(EncodedEvent::of).map_err(status_from_run_error))
        })
    }
}

/// Waits until a started run is recorded in the run store, so that every replica knows the id
/// its caller gets. (Boxed where awaited: a handler of a run already recorded, as every run of
/// the memory store is, carries none of this.)
pub(crate) async fn stored(mut handle: RunHandle) -> Result<RunHandle, Status> {
    handle.stored().await.map_err(status_from_run_error)?;
    Ok(handle)
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
        let tools = Access::of_grpc(&request)
            .tool_specs(&self.engine)
            .into_iter()
            .map(|spec| pb::Tool {
                input_schema: as_struct(&spec.input_schema),
                output_schema: spec.output_schema.as_ref().and_then(as_struct),
                kind: spec.kind.as_str().to_owned(),
                name: spec.name,
                description: spec.description,
            })
            .collect();
        Ok(Response::new(pb::ListToolsResponse { tools }))
    }

    type RunToolStream = WireEvents;

    async fn run_tool(
        &self,
        request: Request<pb::RunToolRequest>,
    ) -> Result<Response<Self::RunToolStream>, Status> {
        let deadline = grpc_timeout(request.metadata())?;
        let access = Access::of_grpc(&request);
        let handle = access
            .run_tool(
                &self.engine,
                tool_run_request(request.into_inner(), deadline),
            )
            .map_err(status_from_run_error)?;
        let handle = if handle.is_stored() {
            handle
        } else {
            Box::pin(stored(handle)).await?
        };
        Ok(stream_response(handle))
    }

    type RunAgentStream = WireEvents;

    async fn run_agent(
        &self,
        request: Request<pb::RunAgentRequest>,
    ) -> Result<Response<Self::RunAgentStream>, Status> {
        let deadline = grpc_timeout(request.metadata())?;
        let access = Access::of_grpc(&request);
        let handle = access
            .run_agent(&self.agent, agent_request(request.into_inner(), deadline))
            .map_err(status_from_run_error)?;
        let handle = if handle.is_stored() {
            handle
        } else {
            Box::pin(stored(handle)).await?
        };
        Ok(stream_response(handle))
    }
}

fn as_struct(schema: &serde_json::Value) -> Option<prost_types::Struct> {
    match schema {
        serde_json::Value::Object(object) => Some(json_to_struct(object.clone())),
        _ => None,
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
