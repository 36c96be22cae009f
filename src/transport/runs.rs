//! The `toolstream.v1.RunService` implementation: runs as resources, looked up, listed, watched
//! and cancelled by id.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::auth::Access;

use super::convert::{
    arguments_to_wire, input_requested, progress, reply, run_options, timestamp, watch_from,
};
use super::service::{WireEvents, status_from_run_error};
use crate::engine::{Engine, EventKind, RunFilter, RunSnapshot, RunState};
use crate::json_proto::json_to_value;
use crate::pb;
use crate::pb::encoded::run_service_server::RunService;

/// The gRPC RunService over an [`Engine`].
#[derive(Clone)]
pub struct RunServiceImpl {
    engine: Arc<Engine>,
}

impl RunServiceImpl {
    /// A service over the runs of `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        RunServiceImpl { engine }
    }
}

fn run_id(run_id: &str) -> Result<&str, Status> {
    if run_id.is_empty() {
        return Err(Status::invalid_argument(
            "run_id is empty; pass the id from the x-run-id metadata or the started event",
        ));
    }
    Ok(run_id)
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
            let status = status_from_run_error(error);
            (status.code() as i32, status.message().to_owned())
        }
        None => (0, String::new()),
    };
    pb::Run {
        run_id: run.run_id.to_string(),
        state: state_to_wire(run.state) as i32,
        tool: run.tool,
        agent: run.agent,
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

#[tonic::async_trait]
impl RunService for RunServiceImpl {
    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let access = Access::of_grpc(&request);
        let request = request.into_inner();
        let run = access
            .get_run(&self.engine, run_id(&request.run_id)?)
            .await
            .map_err(status_from_run_error)?;
        Ok(Response::new(run_to_wire(run)))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let access = Access::of_grpc(&request);
        let request = request.into_inner();
        let state = match request.state() {
            pb::RunState::Unspecified => None,
            pb::RunState::Running => Some(RunState::Running),
            pb::RunState::Succeeded => Some(RunState::Succeeded),
            pb::RunState::Failed => Some(RunState::Failed),
            pb::RunState::Cancelled => Some(RunState::Cancelled),
            pb::RunState::InputRequired => Some(RunState::InputRequired),
        };
        let page = access
            .list_runs(
                &self.engine,
                RunFilter {
                    state,
                    tool: (!request.tool.is_empty()).then_some(request.tool),
                    page_size: request.page_size as usize,
                    page_token: request.page_token,
                    principal: None,
                },
            )
            .await
            .map_err(status_from_run_error)?;
        Ok(Response::new(pb::ListRunsResponse {
            runs: page.runs.into_iter().map(run_to_wire).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type WatchRunStream = WireEvents;

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let access = Access::of_grpc(&request);
        let request = request.into_inner();
        let from = watch_from(&request);
        let events = access
            .watch_run(
                &self.engine,
                run_id(&request.run_id)?,
                from,
                &run_options(request.options),
            )
            .await
            .map_err(status_from_run_error)?;
        Ok(Response::new(WireEvents::new(events)))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let access = Access::of_grpc(&request);
        let request = request.into_inner();
        let run = access
            .cancel_run(&self.engine, run_id(&request.run_id)?)
            .await
            .map_err(status_from_run_error)?;
        Ok(Response::new(run_to_wire(run)))
    }

    async fn respond_to_run(
        &self,
        request: Request<pb::RespondToRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let access = Access::of_grpc(&request);
        let request = request.into_inner();
        let run = access
            .respond(
                &self.engine,
                run_id(&request.run_id)?,
                &request.request_id,
                reply(&request),
            )
            .await
            .map_err(status_from_run_error)?;
        Ok(Response::new(run_to_wire(run)))
    }
}
