//! The `toolstream.v1.RunService` implementation: runs as resources, looked up, listed, watched
//! and cancelled by id.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller_of;
use super::convert::{
    arguments_to_wire, input_requested, progress, reply, run_options, timestamp, watch_from,
};
use super::service::WireEvents;
use crate::engine::{EventKind, RunFilter, RunSnapshot, RunState};
use crate::json_proto::json_to_value;
use crate::operations::{Operations, WatchRequest};
use crate::pb;
use crate::pb::encoded::run_service_server::RunService;
use crate::status;

/// The gRPC RunService over the [`Operations`].
#[derive(Clone)]
pub struct RunServiceImpl {
    operations: Arc<Operations>,
}

impl RunServiceImpl {
    /// A service calling `operations` (which the other faces share).
    pub fn new(operations: Arc<Operations>) -> Self {
        RunServiceImpl { operations }
    }
}

fn state_to_wire(state: RunState) -> pb::RunState {
    match state {
        RunState::Running => pb::RunState::Running,
        RunState::Succeeded => pb::RunState::Succeeded,
        RunState::Failed => pb::RunState::Failed,
        RunState::Cancelled => pb::RunState::Cancelled,
        RunState::InputRequired => pb::RunState::InputRequired,
    }
}

/// A run's snapshot as a wire message.
pub(crate) fn run_to_wire(run: RunSnapshot) -> pb::Run {
    let (error_code, error_message) = match run.error {
        Some(error) => {
            let status = status::from_run_error(error);
            (status.code() as i32, status.message().to_owned())
        }
        None => (0, String::new()),
    };
    pb::Run {
        run_id: run.run_id.to_string(),
        state: state_to_wire(run.state) as i32,
        tool: run.kind.tool_name().to_owned(),
        agent: run.kind.is_agent(),
        arguments: run.arguments.and_then(arguments_to_wire),
        prompt: run.prompt,
        create_time: Some(timestamp(run.create_time)),
        end_time: run.end_time.map(timestamp),
        last_sequence: run.last_sequence,
        progress: run
            .progress
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::Progress {
                    call,
                    update,
                    eta_seconds,
                } => Some(progress(call, update, *eta_seconds)),
                _ => None,
            })
            .collect(),
        result: run.result.map(json_to_value),
        error_code,
        error_message,
        labels: run.labels.into_iter().collect(),
        idempotency_key: run.idempotency_key,
        pending_inputs: run
            .pending_inputs
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::InputRequested(request) => Some(input_requested(request)),
                _ => None,
            })
            .collect(),
    }
}

/// The engine's filter for a ListRuns request.
pub(crate) fn run_filter(request: pb::ListRunsRequest) -> RunFilter {
    let state = match request.state() {
        pb::RunState::Unspecified => None,
        pb::RunState::Running => Some(RunState::Running),
        pb::RunState::Succeeded => Some(RunState::Succeeded),
        pb::RunState::Failed => Some(RunState::Failed),
        pb::RunState::Cancelled => Some(RunState::Cancelled),
        pb::RunState::InputRequired => Some(RunState::InputRequired),
    };
    RunFilter {
        state,
        tool: (!request.tool.is_empty()).then_some(request.tool),
        page_size: request.page_size as usize,
        page_token: request.page_token,
        owner: None,
        labels: request.labels.into_iter().collect(),
    }
}

/// A page of runs as the wire message.
pub(crate) fn page_to_wire(page: crate::engine::RunPage) -> pb::ListRunsResponse {
    pb::ListRunsResponse {
        runs: page.runs.into_iter().map(run_to_wire).collect(),
        next_page_token: page.next_page_token,
    }
}

/// The operation's request for a WatchRun request.
pub(crate) fn watch_request(request: pb::WatchRunRequest) -> WatchRequest {
    WatchRequest {
        from: watch_from(&request),
        options: run_options(request.options),
        run_id: request.run_id,
    }
}

#[tonic::async_trait]
impl RunService for RunServiceImpl {
    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let caller = caller_of(&request);
        let run = self
            .operations
            .get_run(&caller, &request.into_inner().run_id)
            .await
            .map_err(status::from_run_error)?;
        Ok(Response::new(run_to_wire(run)))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let caller = caller_of(&request);
        let page = self
            .operations
            .list_runs(&caller, run_filter(request.into_inner()))
            .await
            .map_err(status::from_run_error)?;
        Ok(Response::new(page_to_wire(page)))
    }

    type WatchRunStream = WireEvents;

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let caller = caller_of(&request);
        let events = self
            .operations
            .watch_run(&caller, &watch_request(request.into_inner()))
            .await
            .map_err(status::from_run_error)?;
        Ok(Response::new(WireEvents::new(events)))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let caller = caller_of(&request);
        let run = self
            .operations
            .cancel_run(&caller, &request.into_inner().run_id)
            .await
            .map_err(status::from_run_error)?;
        Ok(Response::new(run_to_wire(run)))
    }

    async fn respond_to_run(
        &self,
        request: Request<pb::RespondToRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let run = self
            .operations
            .respond(
                &caller,
                &request.run_id,
                &request.request_id,
                reply(&request),
            )
            .await
            .map_err(status::from_run_error)?;
        Ok(Response::new(run_to_wire(run)))
    }
}
