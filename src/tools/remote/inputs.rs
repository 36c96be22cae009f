//! The input requests of a remote run, relayed under the local call.
//!
//! When the remote run asks (`input_requested` on its stream), the same question (prompt,
//! schema, kind, data, and an `expire_time` no later than the remote's) is asked here through
//! the call's progress handle, under the node that asked it, so it shows in the local run and is
//! answered like any of its requests. The local outcome goes back to the remote with
//! `RespondToRun` on the remote's `RunService` (the remote's run id from its events): an answer
//! as the value, anything else (declined, cancelled, a question that could not be asked here)
//! as a decline. A request that expired here because the remote's own expiry came needs nothing
//! sent: the remote lapses it by itself. When the remote resolves a request first
//! (`input_resolved` on its stream: answered through the remote, expired there), the local
//! request is resolved with the same outcome ([`crate::tools::Progress::ask_until`]), and
//! nothing is sent back. So each request is answered once on each side and neither side waits
//! on the other for longer than the requests live.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde_json::Value;
use tokio::sync::oneshot;

use super::Remote;
use crate::json_proto::{json_to_value, struct_to_json, value_to_json};
use crate::pb;
use crate::tools::{Answer, InputKind, Progress, Question};

/// How long the remote may take to take an answer.
const RESPOND_TIMEOUT: Duration = Duration::from_secs(10);

/// The remote run's requests being asked here, and the answers on their way back.
#[derive(Default)]
pub(super) struct RelayedInputs {
    /// By the remote's request id: what resolves the local request when the remote resolves
    /// it first. Removed once either side resolved it.
    open: HashMap<String, oneshot::Sender<Answer>>,
    /// The local questions being asked.
    asking: FuturesUnordered<BoxFuture<'static, Step>>,
    /// The answers being sent back.
    sending: FuturesUnordered<BoxFuture<'static, Step>>,
}

/// A local question's outcome, or the remote's reply to an answer sent back.
pub(super) enum Step {
    Asked {
        run_id: String,
        request_id: String,
        answer: Answer,
        /// The remote request's own expiry.
        remote_expires: Option<SystemTime>,
    },
    Sent {
        request_id: String,
        sent: Result<(), tonic::Status>,
    },
}

impl RelayedInputs {
    /// Asks the remote run `run_id`'s `request` here, on `node` (the handle of the call or
    /// relayed sub-task that asked it).
    pub(super) fn requested(
        &mut self,
        node: Progress,
        run_id: String,
        request: pb::InputRequested,
    ) {
        let (settle, settled) = oneshot::channel::<Answer>();
        self.open.insert(request.request_id.clone(), settle);
        let remote_expires = request
            .expire_time
            .and_then(|time| SystemTime::try_from(time).ok());
        let question = Question {
            prompt: request.prompt,
            schema: request
                .schema
                .map(|schema| Value::Object(struct_to_json(schema))),
            kind: match pb::InputKind::try_from(request.kind) {
                Ok(pb::InputKind::Approval) => InputKind::Approval,
                _ => InputKind::Input,
            },
            data: request.data.map(struct_to_json),
            expire_time: remote_expires,
        };
        let request_id = request.request_id;
        self.asking.push(Box::pin(async move {
            // A sender dropped without a word: the relay is ending, and so is the call.
            let settled = Box::pin(async move { settled.await.unwrap_or(Answer::Cancelled) });
            let answer = node.ask_until(question, settled).await;
            Step::Asked {
                run_id,
                request_id,
                answer,
                remote_expires,
            }
        }));
    }

    /// The remote resolved `resolved.request_id`: the local request is resolved the same way,
    /// unless it was resolved here first (then its outcome is on its way to the remote).
    pub(super) fn resolved(&mut self, resolved: pb::InputResolved) {
        let Some(settle) = self.open.remove(&resolved.request_id) else {
            return;
        };
        let answer = match pb::InputOutcome::try_from(resolved.outcome) {
            Ok(pb::InputOutcome::Answered) => {
                Answer::Answered(resolved.value.map_or(Value::Null, value_to_json))
            }
            Ok(pb::InputOutcome::Declined) => Answer::Declined,
            Ok(pb::InputOutcome::Expired) => Answer::Expired,
            Ok(pb::InputOutcome::Cancelled | pb::InputOutcome::Unspecified) | Err(_) => {
                Answer::Cancelled
            }
        };
        let _ = settle.send(answer);
    }

    /// The next step that completes; never completes while there is none.
    pub(super) async fn next(&mut self) -> Step {
        let asked = async {
            match self.asking.next().await {
                Some(step) => step,
                None => std::future::pending().await,
            }
        };
        let sent = async {
            match self.sending.next().await {
                Some(step) => step,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            step = asked => step,
            step = sent => step,
        }
    }

    /// The remote run ended: every local request it left is resolved here before the call
    /// ends, with the outcome the remote gave it (its `input_resolved` came before its end) or
    /// else CANCELLED. Answers on their way back are dropped: nothing waits for them any more.
    pub(super) async fn settle_all(&mut self) {
        // A dropped sender settles its request CANCELLED.
        self.open.clear();
        while self.asking.next().await.is_some() {}
    }

    /// Carries on after `step`: sends a local outcome back to the remote when the remote still
    /// waits for it. Fails when the remote refused an answer it should have taken (it does not
    /// serve RespondToRun, refused the value, is unreachable), as the status to fail the call
    /// with: the remote would otherwise wait for an answer that never comes.
    pub(super) fn carry_on(&mut self, step: Step, remote: &Remote) -> Result<(), tonic::Status> {
        match step {
            Step::Asked {
                run_id,
                request_id,
                answer,
                remote_expires,
            } => {
                if self.open.remove(&request_id).is_none() {
                    // The remote resolved it first: this outcome is that one.
                    return Ok(());
                }
                let (value, decline) = match answer {
                    Answer::Answered(value) => (Some(json_to_value(value)), false),
                    // The remote's own expiry came: it lapses the request there by itself.
                    Answer::Expired if remote_expires.is_some_and(|at| SystemTime::now() >= at) => {
                        return Ok(());
                    }
                    Answer::Declined | Answer::Expired | Answer::Cancelled | Answer::Refused(_) => {
                        (None, true)
                    }
                };
                let mut request = remote.request(pb::RespondToRunRequest {
                    run_id,
                    request_id: request_id.clone(),
                    value,
                    decline,
                });
                request.set_timeout(RESPOND_TIMEOUT);
                let mut runs = remote.runs.clone();
                self.sending.push(Box::pin(async move {
                    let sent = runs.respond_to_run(request).await.map(|_| ());
                    Step::Sent { request_id, sent }
                }));
                Ok(())
            }
            // The remote resolved the request some other way in the meantime, or its run ended
            // (a worker forgets a call once it ended: NOT_FOUND): its stream says how.
            Step::Sent { sent: Ok(()), .. } => Ok(()),
            Step::Sent {
                sent: Err(status), ..
            } if matches!(
                status.code(),
                tonic::Code::FailedPrecondition | tonic::Code::NotFound
            ) =>
            {
                Ok(())
            }
            Step::Sent {
                request_id,
                sent: Err(status),
            } => Err(tonic::Status::new(
                status.code(),
                format!(
                    "it did not take the answer to its input request {request_id:?} (RespondToRun): {}",
                    status.message()
                ),
            )),
        }
    }
}
